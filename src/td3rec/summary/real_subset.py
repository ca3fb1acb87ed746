"""Real-subset baselines (DESIGN §6): n real users' training sequences, truncated to the last L items, used
as hard data through the same evaluation as a summary.

Only users with at least 2 training items are eligible (one input and one target). The selections:

- ``random``: n users uniformly without replacement (seeded).
- ``longest``: the n longest training sequences.
- ``popular``: the n users whose training sequences hold the most popular items: each user is scored by the
  **mean popularity of the items in their training sequence**, popularity being an item's number of
  occurrences in all users' training sequences (validation and test items are not counted); the highest
  means are kept. A mean, not a sum, so that the choice is about *which* items a user has, not how many
  (``longest`` covers length).
- ``herding`` and ``kcenter``: selections on **teacher features**. A user's feature is the teacher's
  sequence representation (eval mode) of their *last training prefix*: the training sequence without its
  last item (last ``max_len`` items), i.e. the input of the user's last training example
  (:func:`last_prefix_features`).

  ``herding`` (greedy mean matching, Welling 2009 / Chen et al. 2010): users are added one at a time, each
  time the one that brings the mean of the selected features closest (Euclidean) to the mean of all
  eligible users' features.
  ``kcenter`` (greedy k-center, Sener & Savarese 2018): starts from the user closest to the mean of all
  eligible features, then repeatedly adds the user farthest from every selected one (largest distance to
  its nearest selected user); a 2-approximation of the minimal covering radius.

Every tie is broken by the lower user index.
"""

from __future__ import annotations

import numpy as np
import torch

from td3rec.data.sequences import LeaveOneOutSplit
from td3rec.errors import ConfigError
from td3rec.evaluation.sources import HardSequences

SUBSET_METHODS = ("random", "longest", "popular", "herding", "kcenter")
#: selections that need teacher features
FEATURE_METHODS = ("herding", "kcenter")


def select_users(split: LeaveOneOutSplit, method: str, n: int, seed: int = 0,
                 features: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
    """Indices of the ``n`` users a baseline keeps (only users with >= 2 training items are eligible).

    ``random`` is sorted by user index; ``longest`` and ``popular`` are in rank order; ``herding`` and
    ``kcenter`` in selection order. ``features [n_users, H]`` (one row per user, see
    :func:`last_prefix_features`) are needed by ``herding`` and ``kcenter``.
    """
    lengths = np.array([len(s) for s in split.train])
    eligible = np.flatnonzero(lengths >= 2)
    if method not in SUBSET_METHODS:
        raise ConfigError(f"unknown subset method {method!r}; use one of {', '.join(SUBSET_METHODS)}")
    if n <= 0:
        raise ConfigError(f"subset size must be positive, got {n}")
    if n > len(eligible):
        raise ConfigError(f"subset size {n} exceeds the {len(eligible)} users with at least 2 training items")
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(eligible, size=n, replace=False))
    if method == "longest":
        order = sorted(eligible, key=lambda u: (-lengths[u], u))
        return np.array(order[:n])
    if method == "popular":
        score = mean_item_popularity(split)
        order = sorted(eligible, key=lambda u: (-score[u], u))
        return np.array(order[:n])
    if features is None:
        raise ConfigError(f"the {method} subset selects on teacher features: give a teacher (--teacher RUN_DIR)")
    X = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if X.ndim != 2 or X.shape[0] != split.n_users:
        raise ValueError(f"features must be [n_users={split.n_users}, H], got {X.shape}")
    X = X[eligible].astype(np.float64)
    picks = herding(X, n) if method == "herding" else k_center(X, n)
    return eligible[picks]


def mean_item_popularity(split: LeaveOneOutSplit) -> np.ndarray:
    """Per user: the mean, over the items of their training sequence, of each item's number of occurrences in
    all training sequences (0 for an empty sequence)."""
    counts = np.zeros(split.n_items + 1, dtype=np.int64)
    for seq in split.train:
        np.add.at(counts, seq, 1)
    return np.array([counts[seq].mean() if len(seq) else 0.0 for seq in split.train], dtype=np.float64)


def herding(X: np.ndarray, n: int) -> np.ndarray:
    """Greedy mean matching: row indices of ``X [N, H]``, in selection order; step ``t`` adds the row ``i``
    minimising ``|| mean(X) - (sum of selected + X[i]) / t ||`` (lowest index on ties)."""
    X = np.asarray(X, dtype=np.float64)
    target = X.mean(axis=0)
    total = np.zeros(X.shape[1])
    available = np.ones(len(X), dtype=bool)
    picks = []
    for t in range(1, n + 1):
        dist = (((total + X) / t - target) ** 2).sum(axis=1)
        dist[~available] = np.inf
        i = int(np.argmin(dist))
        picks.append(i)
        available[i] = False
        total += X[i]
    return np.array(picks, dtype=np.int64)


def k_center(X: np.ndarray, n: int) -> np.ndarray:
    """Greedy k-center: row indices of ``X [N, H]``, in selection order; the first is the row closest to the
    mean of ``X``, each next the row farthest from its nearest selected row (lowest index on ties)."""
    X = np.asarray(X, dtype=np.float64)
    first = int(np.argmin(((X - X.mean(axis=0)) ** 2).sum(axis=1)))
    picks = [first]
    nearest = ((X - X[first]) ** 2).sum(axis=1)
    available = np.ones(len(X), dtype=bool)
    available[first] = False
    for _ in range(n - 1):
        candidates = np.where(available, nearest, -np.inf)
        i = int(np.argmax(candidates))
        picks.append(i)
        available[i] = False
        nearest = np.minimum(nearest, ((X - X[i]) ** 2).sum(axis=1))
    return np.array(picks, dtype=np.int64)


@torch.no_grad()
def last_prefix_features(teacher, split: LeaveOneOutSplit, max_len: int | None = None,
                         batch_size: int = 1024) -> torch.Tensor:
    """The teacher's features (eval mode) of every user's last training prefix (training sequence without its
    last item, last ``max_len`` items; default the teacher's ``max_len``): ``[n_users, H]`` on the CPU; users
    with fewer than 2 training items get zeros (they are never eligible)."""
    max_len = max_len or teacher.max_len
    device = next(teacher.parameters()).device
    users = [u for u, seq in enumerate(split.train) if len(seq) >= 2]
    teacher.eval()
    out = torch.zeros(split.n_users, teacher.hidden_size)
    for start in range(0, len(users), batch_size):
        chunk = users[start : start + batch_size]
        ids = np.zeros((len(chunk), max_len), dtype=np.int64)
        lengths = np.zeros(len(chunk), dtype=np.int64)
        for row, u in enumerate(chunk):
            prefix = split.train[u][:-1][-max_len:]
            ids[row, : len(prefix)] = prefix
            lengths[row] = len(prefix)
        feats = teacher.features(torch.from_numpy(ids).to(device), torch.from_numpy(lengths).to(device))
        out[torch.as_tensor(chunk)] = feats.float().cpu()
    return out


def subset_sequences(split: LeaveOneOutSplit, users: np.ndarray, max_len: int) -> HardSequences:
    """The chosen users' training sequences (last ``max_len`` items each), right-padded."""
    ids = np.zeros((len(users), max_len), dtype=np.int64)
    lengths = np.zeros(len(users), dtype=np.int64)
    for row, u in enumerate(users):
        tail = split.train[u][-max_len:]
        ids[row, : len(tail)] = tail
        lengths[row] = len(tail)
    return HardSequences(torch.from_numpy(ids), torch.from_numpy(lengths))


def real_subset(split: LeaveOneOutSplit, method: str, n: int, max_len: int, seed: int = 0,
                features: np.ndarray | torch.Tensor | None = None) -> HardSequences:
    """A real-subset baseline (any of :data:`SUBSET_METHODS`) as hard training data."""
    return subset_sequences(split, select_users(split, method, n, seed, features), max_len)
