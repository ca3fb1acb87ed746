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
