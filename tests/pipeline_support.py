"""A small generated dataset on disk for end-to-end tests of train / distill / evaluate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_ITEMS = 120


def write_toy_dataset(folder: Path, n_users: int = 80, seed: int = 0) -> Path:
    """One-user-per-line file where items mostly follow ``i -> i + 1`` (learnable), with some noise."""
    rng = np.random.default_rng(seed)
    lines = []
    for user in range(1, n_users + 1):
        length = int(rng.integers(6, 25))
        item = int(rng.integers(1, N_ITEMS + 1))
        seq = []
        for _ in range(length):
            seq.append(item)
            item = item % N_ITEMS + 1 if rng.random() < 0.8 else int(rng.integers(1, N_ITEMS + 1))
        lines.append(" ".join(map(str, [user] + seq)))
    path = folder / "toy.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def distil_toy_summary(toy: Path, folder: Path) -> Path:
    """A real (tiny) TD3 summary of ``toy`` through the CLI: ``td3rec train`` then ``td3rec distill``."""
    from td3rec.cli import main

    teacher = folder / "teacher"
    assert main(["train", "--dataset", str(toy), "--epochs", "3", "--out", str(teacher), "--k-core", "0",
                 "--no-progress", "--mode", "window", "--set", "eval.protocols=[full]", "--valid-metric",
                 "full:NDCG@10", "--set", "model_options={hidden_size: 16, inner_size: 16}"]) == 0
    out = folder / "distill"
    assert main(["distill", "--dataset", str(toy), "--k-core", "0", "--teacher", str(teacher), "--n-sequences", "6",
                 "--seq-len", "8", "--d1", "4", "--d2", "4", "--inner-steps", "4", "--window", "2",
                 "--real-batch-size", "512", "--epochs", "1", "--out", str(out), "--no-progress",
                 "--set", "inner.batch_size=3", "--set", "eval_steps=10", "--set", "eval.protocols=[full]",
                 "--set", "select_metric=full:MRR@10", "--set", "trajectory_epochs=[1, 3]"]) == 0
    return out / "summary_best.safetensors"


#: options of a tiny, fast `td3rec train` run on the toy dataset (full ranking only, 16-dim SASRec)
TRAIN_TINY = ["--k-core", "0", "--no-progress", "--set", "eval.protocols=[full]", "--valid-metric", "full:NDCG@10",
              "--set", "model_options={hidden_size: 16, inner_size: 16}"]

#: options of a tiny, fast `td3rec distill` run (4 outer steps per epoch on the toy dataset)
DISTILL_TINY = ["--k-core", "0", "--no-progress", "--n-sequences", "6", "--seq-len", "8", "--d1", "4", "--d2", "4",
                "--inner-steps", "4", "--window", "2", "--real-batch-size", "256", "--set", "inner.batch_size=3",
                "--set", "eval_steps=10", "--set", "eval.protocols=[full]", "--set", "select_metric=full:MRR@10",
                "--set", "trajectory_epochs=[1, 3]"]


def distill_args(data: Path, teacher: Path | None, out: Path, *extra: str) -> list[str]:
    """`td3rec distill` on the toy data: 3 epochs x 4 outer steps, a resume checkpoint every 3 steps."""
    teacher_args = ["--teacher", str(teacher)] if teacher is not None else []
    return ["distill", "--dataset", str(data), *teacher_args, "--epochs", "3", "--out", str(out), *DISTILL_TINY,
            "--set", "checkpoint_every=3", *extra]


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`td3rec train` on the toy data: 3 epochs x 5 steps (windows), a resume checkpoint every 2 steps."""
    return ["train", "--dataset", str(data), "--epochs", "3", "--mode", "window", "--out", str(out), *TRAIN_TINY,
            "--set", "window_batch_size=16", "--set", "checkpoint_every=2", *extra]


def assert_same_summaries(a: Path, b: Path) -> None:
    """``summary_best`` and ``summary_last`` of two distill runs are bit-for-bit equal."""
    import torch

    from td3rec.summary.io import load_summary

    for name in ("summary_best", "summary_last"):
        first, _ = load_summary(a / f"{name}.safetensors")
        second, _ = load_summary(b / f"{name}.safetensors")
        assert first.keys() == second.keys()
        for key in first:
            assert torch.equal(first[key], second[key]), (name, key)


def without_timings(rows: list[dict]) -> list[dict]:
    """Log or history rows without their wall-clock fields (the only ones allowed to differ between runs)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def start_frozen(args: list[str], marker: Path, driver: str = "crash_driver.py", n_saved: int = 0) -> subprocess.Popen:
    """``td3rec ARGS`` in a child process that ``driver`` (next to this file) freezes after ``n_saved``
    checkpoints; returns once it is frozen (``marker`` exists). Same thread count as the tests, so the same
    float reductions."""
    import pytest
    import torch

    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name(driver)), str(marker), str(n_saved), "-q",
                              *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"the run ended before it could be frozen (exit {child.returncode}): {child.stderr.read()}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail("the run never reached the freeze point")
        time.sleep(0.05)
    return child


def kill_child(child: subprocess.Popen) -> None:
    """SIGKILL a frozen child and reap it."""
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    if child.stderr is not None:
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
