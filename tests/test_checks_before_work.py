"""Checks before any output (issue 15, points 2 and 5): the reproductions of the issue, a teacher that did not
finish or whose trajectory checkpoints are corrupt, export options, and pathological JSON; each is one error
line (exit 2) and leaves no output behind."""

from __future__ import annotations

import json
import shutil

import pytest

from td3rec.cli import main

from pipeline_support import distill_args, train_args


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"td3rec {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "'lr' must be a finite number"),
    (["--set", "lr=inf"], "'lr' must be a finite number"),
    (["--seed", str(2**70)], "out of range for a seed"),
    (["--set", "max_len=100000000"], "needs at least"),
    (["--set", "model_options={hidden_size: 1000000000}"], "needs at least"),
    (["--set", "=3"], "the key must be a setting name"),
    (["--set", "eval.ks=.inf"], "cannot read inf as int"),
    (["--set", "model_options={1: 2}"], "model_options must map option names"),
    (["--valid-metric", "full:NDCG@3"], "is not computed"),
])
def test_train_reproductions(toy_data, tmp_path, capsys, args, message):
    out = tmp_path / "t"
    assert main(train_args(toy_data, out, *args)) == 2
    assert message in one_error_line(capsys, "train")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--set", "outer_lr=inf"], "'outer_lr' must be a finite number"),
    (["--outer-lr", "nan"], "'outer_lr' must be a finite number"),
    (["--seed", str(2**70)], "out of range for a seed"),
    (["--set", "eval.negative_seed=-1"], "out of range for a seed"),
    (["--n-sequences", "100000000"], "needs at least"),
    (["--set", "=3"], "the key must be a setting name"),
    (["--set", "select_metric=full:NDCG@3"], "select_metric 'full:NDCG@3' is not computed"),
    (["--set", "select_metric=pop100:NDCG@10"], "not among the evaluated protocols"),
    (["--set", "inner.momentum=0.9"], "inner.momentum 0.9 applies to inner.optimizer=sgd only"),
])
def test_distill_reproductions(toy_data, toy_teacher, tmp_path, capsys, args, message):
    out = tmp_path / "d"
    assert main(distill_args(toy_data, toy_teacher, out, *args)) == 2
    assert message in one_error_line(capsys, "distill")
    assert not out.exists()


def test_sgd_momentum_is_accepted(toy_data, toy_teacher, tmp_path):
    out = tmp_path / "d"
    assert main(distill_args(toy_data, toy_teacher, out, "--epochs", "1", "--max-steps", "1",
                             "--set", "inner.optimizer=sgd", "--set", "inner.momentum=0.9")) == 0


def test_an_unfinished_teacher_is_refused_before_any_output(toy_data, toy_teacher, tmp_path, capsys):
    """A teacher whose training was interrupted (metrics.json says running) is refused, as the README says."""
    for status in ("running", "diverged"):
        teacher = tmp_path / f"teacher-{status}"
        shutil.copytree(toy_teacher, teacher)
        metrics = json.loads((teacher / "metrics.json").read_text())
        (teacher / "metrics.json").write_text(json.dumps(dict(metrics, status=status)))
        out = tmp_path / f"out-{status}"
        assert main(distill_args(toy_data, teacher, out)) == 2
        assert "did not finish" in one_error_line(capsys, "distill")
        assert not out.exists()


def test_a_teacher_with_a_corrupt_trajectory_checkpoint_is_refused_before_any_output(toy_data, toy_teacher,
                                                                                     tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(toy_teacher, teacher)
    step = sorted((teacher / "checkpoints").glob("epoch_*.pt"))[-1]
    step.write_bytes(step.read_bytes()[:100])
    out = tmp_path / "out"
    assert main(distill_args(toy_data, teacher, out)) == 2
    line = one_error_line(capsys, "distill")
    assert step.name in line and "cannot be read" in line
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--mode", "sample", "--seed", "-1"], "--seed must be in 0 .."),
    (["--mode", "sample", "--seed", str(2**70)], "--seed must be in 0 .."),
    (["--mode", "sample", "--samples", str(10**15)], "needs at least"),
    (["--mode", "sample", "--samples", "0"], "--samples must be a positive number"),
])
def test_export_options(toy_distill_reference, tmp_path, capsys, args, message):
    out = tmp_path / "x.inter"
    assert main(["export", str(toy_distill_reference / "summary_best.safetensors"), "--out", str(out), *args]) == 2
    assert message in one_error_line(capsys, "export")
    assert not out.exists()


def test_export_never_replaces_its_summary(toy_distill_reference, tmp_path, capsys):
    summary = tmp_path / "s.safetensors"
    shutil.copy(toy_distill_reference / "summary_best.safetensors", summary)
    before = summary.read_bytes()
    assert main(["export", str(summary), "--out", str(summary), "--overwrite"]) == 2
    assert "would replace the run's own input" in one_error_line(capsys, "export")
    assert summary.read_bytes() == before


@pytest.mark.parametrize("line", [
    '{"user": 1, "item": 2, "x": ' + "[" * 50_000 + "]" * 50_000 + "}",  # deep inside a record
    "[" * 50_000 + "]" * 50_000,  # a line that is only nesting
])
def test_deeply_nested_json_lines(tmp_path, capsys, line):
    """Deep nesting used to be a RecursionError traceback (or a crash of the fast JSON reader)."""
    path = tmp_path / "deep.jsonl"
    path.write_text(line + '\n{"user": 1, "item": 3}\n')
    assert main(["stats", str(path)]) == 2
    assert "nested too deeply" in one_error_line(capsys, "stats")


def test_deeply_nested_step_log_line(tmp_path):
    from td3rec.errors import DataError
    from td3rec.utils.jsonl import read_jsonl

    path = tmp_path / "steps.jsonl"
    path.write_text("[" * 50_000 + "]" * 50_000 + '\n{"step": 1}\n')
    with pytest.raises(DataError, match="line 1 is not a JSON object"):
        read_jsonl(path)
