"""Atomic outputs and disk errors (issue 6, points 2 and 7): every writer leaves the old file or the new one,
never a torn one and never a temporary file; a full disk or a read-only folder is one clear line (exit 2)
and earlier outputs stay intact and loadable, so the run can be resumed once the problem is fixed."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

import td3rec.training.trainer as trainer_module
import td3rec.utils.atomic as atomic
from td3rec.cli import main
from td3rec.errors import DataError, OutputError
from td3rec.models.registry import build_model
from td3rec.summary.io import load_summary, save_summary
from td3rec.training.checkpoint import load_checkpoint, save_checkpoint
from td3rec.utils.jsonl import append_jsonl, read_jsonl, rewrite_jsonl
from td3rec.utils.run_state import RESUME_FILE, load_run_state, save_run_state

from pipeline_support import assert_same_summaries, distill_args, train_args


# -- every writer, three ways to fail ---------------------------------------------------------------------

def _summary(version: int) -> tuple:
    return ({"U": torch.full((2, 2), float(version)), "T": torch.ones(3, 2), "G": torch.ones(2, 2, 4),
             "V": torch.ones(5, 4)}, {"version": version})


def _model(version: int):
    torch.manual_seed(version)
    return build_model("gru4rec", 5, 4, embedding_size=4, hidden_size=4)


WRITERS = {
    # name: (file name, write version v, read back -> a value that identifies the version)
    "summary": ("s.safetensors", lambda p, v: save_summary(p, *_summary(v)),
                lambda p: load_summary(p)[1]["version"]),
    "checkpoint": ("m.pt", lambda p, v: save_checkpoint(p, _model(v), "gru4rec", version=v),
                   lambda p: load_checkpoint(p)[1]["version"]),
    "resume": ("resume.pt", lambda p, v: save_run_state(p, "train", {"version": v}),
               lambda p: load_run_state(p, "train")["version"]),
    "json": ("metrics.json", lambda p, v: atomic.write_json(p, {"version": v}),
             lambda p: json.loads(p.read_text())["version"]),
    "text": ("config.yaml", lambda p, v: atomic.write_text(p, f"version: {v}\n"),
             lambda p: int(p.read_text().split()[1])),
}


class TornWrite:
    """A file object that writes half of what it is given, then fails as a full disk does."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def _fail_write(monkeypatch):
    real_open = open
    monkeypatch.setattr(atomic, "open", lambda path, mode="r", *a, **k: TornWrite(real_open(path, mode, *a, **k))
                        if "w" in mode else real_open(path, mode, *a, **k), raising=False)


def _fail_fsync(monkeypatch):
    def fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", fsync)


def _fail_replace(monkeypatch):
    def replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", replace)


FAULTS = {"torn write": (_fail_write, "No space left on device"), "fsync": (_fail_fsync, "Input/output error"),
          "rename": (_fail_replace, "No space left on device")}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch, writer, fault):
    name, write, read = WRITERS[writer]
    path = tmp_path / name
    write(path, 1)
    before = sorted(p.name for p in tmp_path.iterdir())
    inject, reason = FAULTS[fault]
    inject(monkeypatch)
    with pytest.raises(OutputError) as info:
        write(path, 2)
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and reason in message
    assert read(path) == 1  # the old version, complete
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file left behind
    write(path, 2)
    assert read(path) == 2


def test_an_exception_inside_the_writer_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.bin"
    atomic.write_bytes(path, b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the ne")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    """mkstemp creates 0600 files; outputs must be readable like any other file (umask applies)."""
    old = os.umask(0o022)
    try:
        atomic._UMASK = None
        atomic.write_text(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644
        (tmp_path / "private.txt").write_text("x")
        os.chmod(tmp_path / "private.txt", 0o600)
        atomic.write_text(tmp_path / "private.txt", "y")  # an existing file keeps its mode
        assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
        atomic._UMASK = None


# -- the JSON-lines step log --------------------------------------------------------------------------------

def test_step_log_readers_skip_a_torn_last_line_and_resume_rewrites_it(tmp_path):
    log = tmp_path / "steps.jsonl"
    for step in (1, 2, 3):
        append_jsonl(log, {"step": step, "loss": 0.5})
    with open(log, "a") as handle:
        handle.write('{"step": 4, "lo')  # killed in the middle of a write
    assert [r["step"] for r in read_jsonl(log)] == [1, 2, 3]
    assert rewrite_jsonl(log, lambda r: r["step"] <= 2) == 2
    append_jsonl(log, {"step": 3, "loss": 0.25})
    assert [r["step"] for r in read_jsonl(log)] == [1, 2, 3]
    assert log.read_text().endswith("\n")


def test_step_log_with_a_corrupted_middle_line_is_an_error(tmp_path):
    log = tmp_path / "steps.jsonl"
    log.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        read_jsonl(log)
    assert read_jsonl(tmp_path / "absent.jsonl") == []


# -- a full disk in the middle of a run ---------------------------------------------------------------------

def _no_space_for(monkeypatch, file_name: str, after: int) -> None:
    """The disk fills up: renaming onto ``file_name`` fails from its ``after + 1``-th write on."""
    real_replace = os.replace
    seen = []

    def replace(src, dst):
        if Path(dst).name == file_name:
            seen.append(dst)
            if len(seen) > after:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)


def _everything_loads(run: Path) -> None:
    for path in run.iterdir():
        assert not path.name.endswith(".tmp"), path
        if path.suffix == ".safetensors":
            load_summary(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.name == "steps.jsonl":
            read_jsonl(path)
        elif path.name == RESUME_FILE:
            load_run_state(path, "distill")


def test_full_disk_during_distillation_is_one_line_and_the_run_resumes(toy_data, toy_teacher, toy_distill_reference,
                                                                        tmp_path, monkeypatch, capsys):
    out = tmp_path / "full"
    _no_space_for(monkeypatch, "summary_last.safetensors", after=1)  # epoch 2's summary cannot be written
    code = main(distill_args(toy_data, toy_teacher, out))
    monkeypatch.undo()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("td3rec distill: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "summary_last.safetensors" in lines[0] and "No space left on device" in lines[0]
    _everything_loads(out)
    assert load_summary(out / "summary_last.safetensors")[1]["epoch"] == 1  # the previous version, intact
    # space freed: the run continues from its last checkpoint and ends as an uninterrupted one
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert_same_summaries(toy_distill_reference, out)


# -- read-only folders ---------------------------------------------------------------------------------------

def _interrupted_train_run(toy_data: Path, out: Path, monkeypatch) -> dict[str, bytes]:
    """A train run stopped after its first resume checkpoint; returns every file's bytes."""
    original = trainer_module.save_run_state

    def save_once(path, kind, state):
        if Path(path).exists():
            raise KeyboardInterrupt
        original(path, kind, state)

    monkeypatch.setattr(trainer_module, "save_run_state", save_once)
    assert main(train_args(toy_data, out)) == 130  # interrupted
    monkeypatch.setattr(trainer_module, "save_run_state", original)
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _assert_unchanged(out: Path, before: dict[str, bytes]) -> None:
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores permission bits, so chmod cannot make a folder read-only (the simulated "
                           "test below covers this case)")
def test_read_only_run_folder_is_a_clear_error_and_keeps_earlier_outputs(toy_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    before = _interrupted_train_run(toy_data, out, monkeypatch)
    folders = [out, out / "checkpoints"]
    for folder in folders:
        folder.chmod(0o555)
    try:
        code = main(["train", "--resume", str(out), "--no-progress"])
    finally:
        for folder in folders:
            folder.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Permission denied" in err[-1] and err[-1].startswith("td3rec train: error: cannot write")
    _assert_unchanged(out, before)


def test_permission_denied_is_a_clear_error_and_keeps_earlier_outputs(toy_data, tmp_path, monkeypatch, capsys):
    """The same as the read-only folder test, with the refusal simulated (works as root too)."""
    out = tmp_path / "run"
    before = _interrupted_train_run(toy_data, out, monkeypatch)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code = main(["train", "--resume", str(out), "--no-progress"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("td3rec train: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "cannot write" in lines[0] and "Permission denied" in lines[0]
    assert "choose a folder you may write to" in lines[0]
    _assert_unchanged(out, before)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # permissions fixed: it continues


def test_output_folder_that_cannot_be_created(toy_data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(train_args(toy_data, blocker / "run"))
    assert code == 2 and "cannot create output folder" in capsys.readouterr().err
