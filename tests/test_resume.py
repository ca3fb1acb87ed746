"""Checkpoint and resume (issue 6, points 1 and 4): a run killed with SIGKILL and resumed with ``--resume``
ends bit for bit where an uninterrupted run with the same seed ends; the same seed and settings give the
same summary, metrics and step log on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import td3rec.distill.distiller as distiller_module
import td3rec.training.trainer as trainer_module
from td3rec.cli import main
from td3rec.summary.io import load_summary
from td3rec.training.checkpoint import load_checkpoint
from td3rec.utils.jsonl import read_jsonl
from td3rec.utils.run_state import RESUME_FILE, load_run_state

from pipeline_support import assert_same_summaries, distill_args, kill_child, start_frozen, train_args, without_timings

def kill_after_checkpoints(args: list[str], n_saved: int, marker: Path) -> None:
    """Run ``td3rec ARGS`` in a child process, SIGKILL it after ``n_saved`` checkpoints and a few more steps."""
    kill_child(start_frozen(args, marker, n_saved=n_saved))


def test_distill_is_deterministic_on_cpu(toy_data, toy_teacher, toy_distill_reference, tmp_path):
    reference = toy_distill_reference
    again = tmp_path / "again"
    assert main(distill_args(toy_data, toy_teacher, again)) == 0
    assert_same_summaries(reference, again)
    first, second = (json.loads((run / "metrics.json").read_text()) for run in (reference, again))
    assert first["history"] == second["history"] and first["best_value"] == second["best_value"]
    assert without_timings(read_jsonl(reference / "steps.jsonl")) == without_timings(read_jsonl(again / "steps.jsonl"))
    # a finished run keeps no resume checkpoint
    assert not (reference / RESUME_FILE).exists() and first["status"] == "finished"


def test_distill_killed_mid_epoch_resumes_bit_for_bit(toy_data, toy_teacher, toy_distill_reference, tmp_path):
    reference = toy_distill_reference
    out = tmp_path / "killed"
    # checkpoints at step 3, epoch 1's end (step 4), step 6; killed at epoch 2's end (steps 7-8 done, not saved)
    kill_after_checkpoints(distill_args(toy_data, toy_teacher, out), 3, tmp_path / "frozen")
    saved = load_run_state(out / RESUME_FILE, "distill")
    assert saved["progress"]["global_step"] == 6 and saved["progress"]["epoch"] == 2
    assert saved["progress"]["position"] == 2 and saved["learners"][0] is not None  # mid-epoch: learner state kept
    assert json.loads((out / "metrics.json").read_text())["status"] == "running"
    assert (out / "steps.jsonl").read_text().endswith('"loss": 0.12')  # the torn line the kill left

    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert_same_summaries(reference, out)
    done, ref = (json.loads((run / "metrics.json").read_text()) for run in (out, reference))
    assert done["status"] == "finished" and done["history"] == ref["history"]
    assert (done["best_epoch"], done["outer_steps"]) == (ref["best_epoch"], ref["outer_steps"])
    # the log holds every step exactly once (the steps after the checkpoint were redone, the torn line dropped)
    assert without_timings(read_jsonl(out / "steps.jsonl")) == without_timings(read_jsonl(reference / "steps.jsonl"))
    assert not (out / RESUME_FILE).exists()


def test_train_killed_mid_epoch_resumes_bit_for_bit(toy_data, tmp_path):
    reference = tmp_path / "reference"
    assert main(train_args(toy_data, reference)) == 0
    out = tmp_path / "killed"
    # 5 steps per epoch, checkpoints at steps 2, 4, epoch 1's end, step 6; killed before step 8's checkpoint
    kill_after_checkpoints(train_args(toy_data, out), 4, tmp_path / "frozen")
    saved = load_run_state(out / RESUME_FILE, "train")
    assert (saved["progress"]["epoch"], saved["progress"]["position"], saved["progress"]["steps"]) == (2, 1, 6)

    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    best, _ = load_checkpoint(out / "best.pt")
    expected, _ = load_checkpoint(reference / "best.pt")
    for (key, value), (_, other) in zip(best.state_dict().items(), expected.state_dict().items()):
        assert torch.equal(value, other), key
    done, ref = (json.loads((run / "metrics.json").read_text()) for run in (out, reference))
    assert without_timings(done["history"]) == without_timings(ref["history"])
    assert done["test"] == ref["test"] and done["best_epoch"] == ref["best_epoch"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    assert not (out / RESUME_FILE).exists()


class Crash(Exception):
    """Stands for the process dying at that point (nothing after it runs)."""


def crash_on_save(monkeypatch, module, n_saved: int) -> None:
    """Let ``module`` write ``n_saved`` resume checkpoints, then 'die' when it writes the next one."""
    original = module.save_run_state
    calls = []

    def save(path, kind, state):
        if len(calls) == n_saved:
            raise Crash
        calls.append(path)
        original(path, kind, state)

    monkeypatch.setattr(module, "save_run_state", save)


def test_distill_stopped_before_its_first_checkpoint_starts_over(toy_data, toy_teacher, toy_distill_reference,
                                                                 tmp_path, monkeypatch):
    reference = toy_distill_reference
    out = tmp_path / "early"
    crash_on_save(monkeypatch, distiller_module, 0)
    with pytest.raises(Crash):
        main(distill_args(toy_data, toy_teacher, out))
    monkeypatch.undo()
    assert not (out / RESUME_FILE).exists() and len(read_jsonl(out / "steps.jsonl")) == 3
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert_same_summaries(reference, out)
    assert len(read_jsonl(out / "steps.jsonl")) == 12


def test_distill_resumes_a_teacher_interrupted_while_training(toy_data, tmp_path, monkeypatch):
    """Without --teacher the teacher is trained inside the run; a crash there resumes the teacher's training."""
    monkeypatch.setattr(distiller_module, "TrainConfig", _short_teacher_config)
    extra = ("--epochs", "1", "--max-steps", "3")
    reference = tmp_path / "reference"
    assert main(distill_args(toy_data, None, reference, *extra)) == 0
    out = tmp_path / "crashed"
    save_run_state = trainer_module.save_run_state
    crash_on_save(monkeypatch, trainer_module, 2)  # the teacher dies when it saves its third epoch
    with pytest.raises(Crash):
        main(distill_args(toy_data, None, out, *extra))
    assert (out / "teacher" / RESUME_FILE).is_file()
    assert json.loads((out / "teacher" / "metrics.json").read_text())["status"] == "running"
    monkeypatch.setattr(trainer_module, "save_run_state", save_run_state)
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert_same_summaries(reference, out)
    for name in ("best.pt", "checkpoints/epoch_004.pt"):
        a, _ = load_checkpoint(out / "teacher" / name)
        b, _ = load_checkpoint(reference / "teacher" / name)
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _short_teacher_config(**kwargs):
    """The on-the-fly teacher of the test: 4 tiny epochs (the default is up to 200 with early stopping)."""
    from td3rec.training.config import TrainConfig

    return TrainConfig(**kwargs, epochs=4, model_options={"hidden_size": 16, "inner_size": 16})


def test_distill_with_sweeping_supports_resumes_bit_for_bit(toy_data, toy_teacher, tmp_path):
    """Top-k supports refreshed one catalogue slice per step, sampled normalisers: the supports are part of the
    resumable state, so a run killed mid-epoch ends exactly like an uninterrupted one."""
    sparse = ("--set", "support_size=5", "--set", "support_refresh=3", "--set", "inner.negatives=7",
              "--set", "outer_negatives=9")
    reference = tmp_path / "reference"
    assert main(distill_args(toy_data, toy_teacher, reference, *sparse)) == 0
    _, meta = load_summary(reference / "summary_best.safetensors")
    assert meta["support_size"] == 5
    out = tmp_path / "killed"
    kill_after_checkpoints(distill_args(toy_data, toy_teacher, out, *sparse), 3, tmp_path / "frozen")
    saved = load_run_state(out / RESUME_FILE, "distill")
    assert saved["progress"]["support"] is not None and saved["progress"]["support"].shape[-1] == 5
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert_same_summaries(reference, out)
    assert without_timings(read_jsonl(out / "steps.jsonl")) == without_timings(read_jsonl(reference / "steps.jsonl"))


def test_checkpoint_of_the_single_learner_format_still_resumes(toy_data, toy_teacher, toy_distill_reference, tmp_path):
    """A resume.pt written before multi-architecture distillation (one "learner" entry, no learner generators)
    resumes to the same end as an uninterrupted run."""
    from td3rec.utils.run_state import save_run_state

    out = tmp_path / "killed"
    kill_after_checkpoints(distill_args(toy_data, toy_teacher, out), 3, tmp_path / "frozen")
    saved = load_run_state(out / RESUME_FILE, "distill")
    saved["learner"] = saved.pop("learners")[0]
    del saved["learner_rngs"]
    save_run_state(out / RESUME_FILE, "distill", saved)
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert_same_summaries(toy_distill_reference, out)
