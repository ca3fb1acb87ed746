"""A small generated dataset on disk for end-to-end tests of train / distill / evaluate."""

from __future__ import annotations

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
