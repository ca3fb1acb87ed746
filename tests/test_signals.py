"""Signals (issue 25, point 3): Ctrl-C (SIGINT) or SIGTERM to a distillation ends it with one line and exit code
130 / 143, in one process as in a multi-process run (``--nproc 2``), where the launcher or its process group gets
the signal: every worker ends, no traceback is printed, and the run resumes with ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed

from td3rec.cli import main
from td3rec.utils import signals
from td3rec.utils.run_state import RESUME_FILE

from pipeline_support import DISTILL_TINY

needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available")


def distill_command(data: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    """`python -m td3rec -q distill` on the toy data: 3 epochs x 4 outer steps, a checkpoint every 2 steps."""
    return [sys.executable, "-m", "td3rec", "-q", "distill", "--dataset", str(data), "--teacher", str(teacher),
            "--epochs", "3", "--out", str(out), *DISTILL_TINY, "--set", "checkpoint_every=2", *extra]


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (the workers of a launcher)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def signal_after_first_checkpoint(command: list[str], out: Path, signum: int, group: bool,
                                  expect_children: int) -> tuple[int, list[str], list[int]]:
    """Start ``command`` in its own session, wait for its first resume checkpoint, send ``signum`` to it (or to
    its process group); returns its exit code, its stderr lines and the processes it had started."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / RESUME_FILE).exists():
            if child.poll() is not None:
                pytest.fail(f"the run ended before its first checkpoint ({child.returncode}): {child.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the run never wrote its first checkpoint")
            time.sleep(0.05)
        workers = children(child.pid)
        assert len(workers) >= expect_children, workers
        if group:
            os.killpg(child.pid, signum)
        else:
            os.kill(child.pid, signum)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    return child.returncode, [line for line in err.splitlines() if line.strip()], workers


def signal_two_process_launcher(toy_data, toy_teacher, out, signum: int, group: bool) -> tuple[int, list[str]]:
    """Signal a ``--nproc 2`` distillation's launcher (or its group) after its first checkpoint; every worker
    must be gone afterwards. Returns the exit code and stderr lines."""
    code, lines, workers = signal_after_first_checkpoint(
        distill_command(toy_data, toy_teacher, out, "--nproc", "2"), out, signum, group=group, expect_children=2)
    assert not [pid for pid in workers if alive(pid)]
    return code, lines


def test_a_single_process_ends_on_sigterm_with_one_line_and_143(toy_data, toy_teacher, tmp_path):
    out = tmp_path / "run"
    code, lines, _ = signal_after_first_checkpoint(distill_command(toy_data, toy_teacher, out), out, signal.SIGTERM,
                                                   group=False, expect_children=0)
    assert (code, lines) == (143, ["td3rec distill: terminated (SIGTERM)"])
    assert (out / RESUME_FILE).is_file()  # resumable
    assert json.loads((out / "run.json").read_text())["command"] == "distill"


@needs_gloo
def test_ctrl_c_on_the_launcher_ends_every_worker_with_one_line_and_the_run_resumes(toy_data, toy_teacher, tmp_path):
    out = tmp_path / "run"
    code, lines = signal_two_process_launcher(toy_data, toy_teacher, out, signal.SIGINT, group=False)
    assert (code, lines) == (130, ["td3rec distill: interrupted"])  # no SignalException traceback, no worker's line
    resumed = subprocess.run([sys.executable, "-m", "td3rec", "-q", "distill", "--resume", str(out), "--nproc", "2",
                              "--no-progress"], capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["outer_steps"] == 12 and metrics["processes"] == 2
    assert not (out / RESUME_FILE).exists()


@needs_gloo
def test_sigterm_to_the_launchers_process_group_ends_every_worker_with_143(toy_data, toy_teacher, tmp_path):
    out = tmp_path / "run"
    code, lines = signal_two_process_launcher(toy_data, toy_teacher, out, signal.SIGTERM, group=True)
    assert (code, lines) == (143, ["td3rec distill: terminated (SIGTERM)"])
    assert (out / RESUME_FILE).is_file()


# -- the pieces ------------------------------------------------------------------------------------------------
def test_exit_codes_and_lines(monkeypatch):
    assert signals.Interrupted(signal.SIGINT).exit_code == 130 and signals.exit_code(signal.SIGTERM) == 143
    assert isinstance(signals.Interrupted(signal.SIGTERM), KeyboardInterrupt)  # every `finally` runs
    monkeypatch.delenv(signals.LAUNCHED_ENV, raising=False)
    assert signals.interruption_line("distill", signal.SIGINT) == "td3rec distill: interrupted"
    monkeypatch.setenv(signals.LAUNCHED_ENV, "1")  # a worker of --nproc: its launcher prints the line
    assert signals.interruption_line("distill", signal.SIGTERM) is None


def test_handlers_are_restored_after_a_command(toy_data, capsys):
    before = {sig: signal.getsignal(sig) for sig in signals.HANDLED}
    assert main(["stats", str(toy_data), "--k-core", "0"]) == 0
    assert {sig: signal.getsignal(sig) for sig in signals.HANDLED} == before


def test_an_error_after_a_signal_is_part_of_the_stop(monkeypatch, capsys):
    """A worker whose collective fails because another process stopped on the signal ends as interrupted (exit
    143, no traceback), not with the collective's error."""
    import td3rec.commands.stats as stats

    def stopped_peer(args):
        signals._received = signal.SIGTERM  # (what the handler records when the signal arrives)
        raise RuntimeError("[gloo] Connection closed by peer")

    monkeypatch.setattr(stats, "run", stopped_peer)
    monkeypatch.delenv(signals.LAUNCHED_ENV, raising=False)
    assert main(["stats", "x"]) == 143
    assert capsys.readouterr().err.strip() == "td3rec stats: terminated (SIGTERM)"
