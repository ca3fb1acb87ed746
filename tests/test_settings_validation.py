"""Validation of settings before any work (issue 6, point 5): impossible or inconsistent options, a teacher
that does not fit, an existing output folder and misused ``--resume`` give one clear line and exit code 2,
and create no output folder."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from td3rec.cli import main

from pipeline_support import DISTILL_TINY, distill_args, train_args, write_toy_dataset


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"td3rec {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


DISTILL_BAD = [
    (["--seq-len", "60"], [], "seq_len 60 is longer than the sasrec learner accepts"),
    (["--set", "max_len=0"], [], "max_len must be positive"),
    (["--d1", "-1"], [], "d1 must be positive"),
    (["--real-batch-size", "0"], [], "real_batch_size must be positive"),
    (["--inner-steps", "3", "--window", "4"], [], "window 4 is larger than inner_steps 3"),
    (["--set", "inner.batch_size=7"], [], "inner.batch_size 7 exceeds n_sequences 6"),
    (["--set", "inner.lr=-0.1"], [], "inner.batch_size and inner.lr must be positive"),
    (["--set", "outer_weight_decay=-1"], [], "outer_weight_decay must be >= 0"),
    (["--set", "checkpoint_every=-1"], [], "checkpoint_every must be >= 0"),
    (["--set", "max_nonfinite_steps=-2"], [], "max_nonfinite_steps must be >= 0"),
    (["--set", "trajectory_epochs=[1, 2, 3]"], [], "trajectory_epochs must be [first, last]"),
    (["--model", "transformerxl"], [], "unknown model 'transformerxl'"),
    (["--device", "tpu"], [], "unknown device"),
    # with the teacher (trained with max_len 50): the learner's position table is the teacher's
    (["--seq-len", "51"], ["teacher"], "seq_len 51 is longer than the sasrec learner accepts (max_len 50"),
    (["--set", "max_len=64"], ["teacher"], "max_len 64 is longer than the sasrec teacher accepts"),
]


@pytest.mark.parametrize("args, needs, message", DISTILL_BAD, ids=[m[:30] for _, _, m in DISTILL_BAD])
def test_bad_distill_settings(toy_data, toy_teacher, tmp_path, capsys, args, needs, message):
    teacher = ["--teacher", str(toy_teacher)] if needs else []
    code = main(["distill", "--dataset", str(toy_data), *teacher, "--out", str(tmp_path / "d"), *DISTILL_TINY, *args])
    assert code == 2
    assert message in _one_error_line(capsys, "distill")
    assert not (tmp_path / "d").exists()


def test_missing_cuda_device_is_refused(toy_data, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["distill", "--dataset", str(toy_data), "--device", "cuda", "--out", str(tmp_path / "d")]) == 2
    assert "CUDA is not available" in _one_error_line(capsys, "distill")
    assert main(train_args(toy_data, tmp_path / "t", "--device", "cuda")) == 2
    assert "CUDA is not available" in _one_error_line(capsys, "train")
    assert not (tmp_path / "d").exists() and not (tmp_path / "t").exists()


def test_gru_learner_has_no_length_limit(toy_data, tmp_path):
    """A summary longer than max_len is fine for a learner without a position table."""
    from td3rec.distill.config import DistillConfig

    DistillConfig(model="gru4rec", seq_len=80, max_len=50).check_learner("gru4rec", 50)


def _bad_teachers(tmp_path, toy_teacher):
    missing = tmp_path / "missing"
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(toy_teacher, corrupt)
    data = (corrupt / "best.pt").read_bytes()
    (corrupt / "best.pt").write_bytes(data[: len(data) // 3])
    no_trajectory = tmp_path / "no-trajectory"
    shutil.copytree(toy_teacher, no_trajectory)
    shutil.rmtree(no_trajectory / "checkpoints")
    return [(missing, "does not exist"), (empty, "not a finished `td3rec train` run (no best.pt)"),
            (corrupt, "cannot be read"), (no_trajectory, "no per-epoch checkpoints")]


def test_bad_teacher_folders(toy_data, toy_teacher, tmp_path, capsys):
    for folder, message in _bad_teachers(tmp_path, toy_teacher):
        out = tmp_path / f"out-{folder.name}"
        assert main(distill_args(toy_data, folder, out)) == 2, folder
        assert message in _one_error_line(capsys, "distill"), folder
        assert not out.exists()


def test_teacher_trained_on_other_data(toy_teacher, tmp_path, capsys):
    other = write_toy_dataset(tmp_path, seed=3)
    assert main(distill_args(other, toy_teacher, tmp_path / "d")) == 2
    assert "trained on different data" in _one_error_line(capsys, "distill")


def test_existing_output_folder_needs_overwrite_or_resume(toy_data, toy_teacher, toy_distill_reference, capsys):
    assert main(distill_args(toy_data, toy_teacher, toy_distill_reference)) == 2
    line = _one_error_line(capsys, "distill")
    assert "already exists" in line and "--overwrite" in line and "--resume" in line


@pytest.mark.parametrize("args, message", [
    (["--set", "checkpoint_every=-5"], "checkpoint_every must be >= 0"),
    (["--set", "max_nonfinite_steps=-1"], "max_nonfinite_steps must be >= 0"),
    (["--max-len", "0"], "max_len must be positive"),
    (["--set", "window_batch_size=0"], "window_batch_size must be positive"),
])
def test_bad_train_settings(toy_data, tmp_path, capsys, args, message):
    assert main(train_args(toy_data, tmp_path / "t", *args)) == 2
    assert message in _one_error_line(capsys, "train")
    assert not (tmp_path / "t").exists()


def test_dataset_is_required_without_resume(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "t")]) == 2
    assert "--dataset" in _one_error_line(capsys, "train")


# -- --resume -----------------------------------------------------------------------------------------------

@pytest.fixture
def interrupted(toy_data, toy_teacher, tmp_path) -> object:
    """A distill run folder that looks interrupted (status running), without re-running anything."""
    out = tmp_path / "run"
    assert main(distill_args(toy_data, toy_teacher, out, "--epochs", "1", "--max-steps", "1")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps(dict(metrics, status="running")))
    return out


def test_resume_option_errors(interrupted, toy_data, toy_teacher, tmp_path, capsys):
    run = str(interrupted)
    cases = [
        (["distill", "--resume", run, "--overwrite"], "--resume and --overwrite exclude each other"),
        (["distill", "--resume", str(tmp_path / "nope")], "no such run folder"),
        (["distill", "--resume", run, "--out", str(tmp_path / "elsewhere")], "continues in that folder"),
        (["distill", "--resume", run, "--epochs", "5"], "epochs (run: 1, given: 5)"),
        (["distill", "--resume", run, "--set", "inner.lr=0.1"], "inner.lr (run: 0.005, given: 0.1)"),
        (["distill", "--resume", run, "--seed", "3"], "seed (run: 0, given: 3)"),
        (["distill", "--resume", run, "--k-core", "5"], "--k-core (run: 0, given: 5)"),
        (["distill", "--resume", run, "--teacher", str(tmp_path)], "--teacher (run:"),
        (["train", "--resume", run], "it is a `td3rec distill` run, not `td3rec train`"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in _one_error_line(capsys, argv[0]), argv
    (interrupted / "run.json").unlink()
    assert main(["distill", "--resume", run]) == 2
    assert "not a resumable td3rec run folder" in _one_error_line(capsys, "distill")


def test_resume_accepts_options_equal_to_the_run(interrupted, toy_data, capsys):
    """Repeating the run's own options is not a conflict (the dataset path may be spelled differently)."""
    code = main(["distill", "--resume", str(interrupted), "--epochs", "1", "--max-steps", "1", "--k-core", "0",
                 "--dataset", str(toy_data), "--set", "checkpoint_every=3", "--no-progress"])
    assert code == 0
    assert json.loads((interrupted / "metrics.json").read_text())["status"] == "finished"


def test_resume_of_a_finished_run_is_refused(toy_distill_reference, capsys):
    assert main(["distill", "--resume", str(toy_distill_reference)]) == 2
    assert "already finished" in _one_error_line(capsys, "distill")


def test_corrupted_resume_checkpoint(interrupted, capsys):
    # a checkpoint torn by a crash of the disk itself (td3rec never writes one partially)
    from td3rec.utils.run_state import RESUME_FILE

    (interrupted / RESUME_FILE).write_bytes(b"PK\x03\x04 not a whole checkpoint")
    assert main(["distill", "--resume", str(interrupted), "--no-progress"]) == 2
    line = _one_error_line(capsys, "distill")
    assert "resume checkpoint" in line and "corrupted" in line
