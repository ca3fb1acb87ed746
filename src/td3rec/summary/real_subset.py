"""Real-subset baselines (DESIGN §6): n real users' training sequences, truncated to the last L items, used
as hard data through the same evaluation as a summary."""

from __future__ import annotations

import numpy as np
import torch

from td3rec.data.sequences import LeaveOneOutSplit
from td3rec.errors import ConfigError
from td3rec.evaluation.sources import HardSequences

SUBSET_METHODS = ("random", "longest")


def select_users(split: LeaveOneOutSplit, method: str, n: int, seed: int = 0) -> np.ndarray:
    """Indices of the ``n`` users a baseline keeps (only users with >= 2 training items are eligible).

    ``random``: uniform without replacement (seeded); ``longest``: the longest training sequences, ties
    broken by user index.
    """
    lengths = np.array([len(s) for s in split.train])
    eligible = np.flatnonzero(lengths >= 2)
    if n <= 0:
        raise ConfigError(f"subset size must be positive, got {n}")
    if n > len(eligible):
        raise ConfigError(f"subset size {n} exceeds the {len(eligible)} users with at least 2 training items")
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(eligible, size=n, replace=False))
    if method == "longest":
        order = sorted(eligible, key=lambda u: (-lengths[u], u))
        return np.array(order[:n])
    raise ConfigError(f"unknown subset method {method!r}; use one of {', '.join(SUBSET_METHODS)}")


def subset_sequences(split: LeaveOneOutSplit, users: np.ndarray, max_len: int) -> HardSequences:
    """The chosen users' training sequences (last ``max_len`` items each), right-padded."""
    ids = np.zeros((len(users), max_len), dtype=np.int64)
    lengths = np.zeros(len(users), dtype=np.int64)
    for row, u in enumerate(users):
        tail = split.train[u][-max_len:]
        ids[row, : len(tail)] = tail
        lengths[row] = len(tail)
    return HardSequences(torch.from_numpy(ids), torch.from_numpy(lengths))


def real_subset(split: LeaveOneOutSplit, method: str, n: int, max_len: int, seed: int = 0) -> HardSequences:
    """Random-n or Longest-n as hard training data."""
    return subset_sequences(split, select_users(split, method, n, seed), max_len)
