"""Ranks of target items and the top-K metrics computed from them (DESIGN §1).

Everything here works from a target's **rank**: the 0-based number of candidate items ranked above it
(rank 0 = the target is first). From the ranks of all users:

- ``HR@K``   = mean of ``1``                  if ``rank < K`` else 0 (hit ratio, = recall with one target);
- ``NDCG@K`` = mean of ``1 / log2(rank + 2)`` if ``rank < K`` else 0;
- ``MRR@K``  = mean of ``1 / (rank + 1)``     if ``rank < K`` else 0.

**Tie rule (pessimistic).** ``rank`` = the number of *other* candidates whose score is ``>=`` the target's
score: every candidate that scores strictly higher, *plus every tie*. A model that outputs constant scores
therefore gets the worst possible rank (``n_candidates - 1``) and can never look good by accident; the
optimistic or "index order" rules used by some libraries reward degenerate models (a constant model with
the target at a low index would score perfectly).

**NaN scores** raise ``ValueError``: a NaN compares false with everything, so it would silently rank
the target first or last depending on which side it is on.

Two candidate sets:

- *full ranking* (:func:`full_ranks`): every real item ``1..n_items``. Column 0 of a score matrix is
  padding and is never a candidate. The user's history is kept unless ``exclude`` is given; the target
  itself is never removed.
- *sampled ranking* (:func:`sampled_ranks`): the target against negatives drawn by
  :func:`sample_negatives` from the items the user never interacted with (``uni100`` / ``pop100``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from td3rec.data.sequences import LeaveOneOutSplit

logger = logging.getLogger(__name__)

#: the cut-offs reported by default
DEFAULT_KS: tuple[int, ...] = (5, 10, 20)

#: a per-row list of item ids: a list of arrays/lists/tensors, or a ``[B, M]`` LongTensor/array padded with 0
Ragged = Union[Sequence[Union[np.ndarray, Sequence[int], torch.Tensor]], torch.Tensor, np.ndarray]

# after this many doubling rounds of vectorised rejection sampling, the rows still short fall back to an
# exact per-row draw (only users who interacted with most of the catalogue, or most of its popularity)
_MAX_REJECTION_ROUNDS = 3
# rows x stream width handled at once by the vectorised sampler (bounds its memory to a few hundred MB)
_CHUNK_ELEMENTS = 1 << 22


# -- checks ---------------------------------------------------------------------------------------------
def _check_no_nan(scores: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` if ``scores`` holds a NaN (ranking a NaN would be silently wrong)."""
    if torch.isnan(scores).any():
        n_bad = int(torch.isnan(scores).any(dim=-1).sum()) if scores.dim() > 1 else 1
        raise ValueError(f"{what} contain NaN ({n_bad} row(s)); refusing to rank NaN scores")


def _check_targets(targets: torch.Tensor, n_items: int) -> None:
    if targets.numel() and (int(targets.min()) < 1 or int(targets.max()) > n_items):
        raise ValueError(f"targets must be item ids in 1..{n_items}; got range "
                         f"{int(targets.min())}..{int(targets.max())}")


# -- full ranking ---------------------------------------------------------------------------------------
def _ragged_coordinates(exclude: Ragged, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten a per-row list of item ids to (row, item) coordinate arrays."""
    if isinstance(exclude, (torch.Tensor, np.ndarray)) and np.ndim(exclude) == 2:
        mat = exclude.detach().cpu().numpy() if isinstance(exclude, torch.Tensor) else np.asarray(exclude)
        if mat.shape[0] != n_rows:
            raise ValueError(f"exclude has {mat.shape[0]} rows, scores have {n_rows}")
        rows = np.repeat(np.arange(n_rows), mat.shape[1])
        return rows, mat.reshape(-1).astype(np.int64)  # 0 = padding, harmless: column 0 is never counted
    if len(exclude) != n_rows:
        raise ValueError(f"exclude has {len(exclude)} rows, scores have {n_rows}")
    arrays = [
        (e.detach().cpu().numpy() if isinstance(e, torch.Tensor) else np.asarray(e)).reshape(-1).astype(np.int64)
        for e in exclude
    ]
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=n_rows)
    rows = np.repeat(np.arange(n_rows), lengths)
    items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    return rows, items


def full_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: Ragged | None = None) -> torch.Tensor:
    """Pessimistic rank of each target among all real items.

    Args:
        scores: ``[B, n_items + 1]`` scores of every item id; column 0 (padding) is ignored whatever it holds.
        targets: ``[B]`` target item ids in ``1..n_items``.
        exclude: optional item ids to remove from each row's candidates (e.g. the user's history, only when
            the protocol asks for it): a list of B id arrays, or a ``[B, M]`` id matrix padded with 0. The
            row's target is never removed, even if listed.

    Returns:
        ``LongTensor[B]`` on ``scores.device``: rank = number of candidates other than the target whose
        score is ``>=`` the target's score (ties count against the target). Constant scores give
        ``n_candidates - 1``.

    Raises:
        ValueError: NaN in a candidate column, a target outside ``1..n_items``, or mismatched shapes.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, n_items + 1], got shape {tuple(scores.shape)}")
    n_rows, n_cols = scores.shape
    targets = torch.as_tensor(targets, device=scores.device).long().reshape(-1)
    if targets.shape[0] != n_rows:
        raise ValueError(f"{targets.shape[0]} targets for {n_rows} score rows")
    _check_targets(targets, n_cols - 1)
    _check_no_nan(scores[:, 1:], "scores")

    target_scores = scores.gather(1, targets[:, None])  # [B, 1]
    above = scores >= target_scores  # [B, C] bool: ties count as above (pessimistic)
    above[:, 0] = False  # padding is never a candidate
    if exclude is not None:
        rows, items = _ragged_coordinates(exclude, n_rows)
        if items.size and (items.min() < 0 or items.max() >= n_cols):
            raise ValueError(f"exclude holds ids outside 0..{n_cols - 1}")
        above[torch.as_tensor(rows, device=scores.device), torch.as_tensor(items, device=scores.device)] = False
    above[torch.arange(n_rows, device=scores.device), targets] = False  # the target does not outrank itself
    return above.sum(dim=1)


# -- sampled ranking ------------------------------------------------------------------------------------
def sampled_ranks(target_scores: torch.Tensor, negative_scores: torch.Tensor) -> torch.Tensor:
    """Pessimistic rank of each target among its sampled negatives.

    Args:
        target_scores: ``[B]`` score of each row's target.
        negative_scores: ``[B, N]`` scores of the row's N negatives.

    Returns:
        ``LongTensor[B]``: number of negatives scoring ``>=`` the target (ties count against the target).

    Raises:
        ValueError: NaN in either input, or mismatched shapes.
    """
    target_scores = target_scores.reshape(-1)
    if negative_scores.dim() != 2 or negative_scores.shape[0] != target_scores.shape[0]:
        raise ValueError(f"negative_scores must be [B, N] with B = {target_scores.shape[0]}, "
                         f"got shape {tuple(negative_scores.shape)}")
    _check_no_nan(target_scores, "target scores")
    _check_no_nan(negative_scores, "negative scores")
    return (negative_scores >= target_scores[:, None]).sum(dim=1)


# -- negative sampling ----------------------------------------------------------------------------------
def _histories(split_or_histories: LeaveOneOutSplit | Sequence[np.ndarray]) -> list[np.ndarray]:
    """The full per-user interaction sequences (for a split: training items + validation + test targets)."""
    seqs = split_or_histories.full if isinstance(split_or_histories, LeaveOneOutSplit) else split_or_histories
    return [np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs]


def _base_distribution(
    histories: list[np.ndarray], n_items: int, strategy: str, popularity: np.ndarray | torch.Tensor | None
) -> np.ndarray:
    """Sampling weights over item ids ``0..n_items`` (index 0 = padding = 0), normalised to sum 1."""
    if strategy == "uniform":
        weights = np.ones(n_items + 1, dtype=np.float64)
    elif strategy == "popularity":
        if popularity is None:
            counts = np.concatenate(histories) if histories else np.zeros(0, dtype=np.int64)
            weights = np.bincount(counts, minlength=n_items + 1).astype(np.float64)
        else:
            weights = np.asarray(
                popularity.detach().cpu().numpy() if isinstance(popularity, torch.Tensor) else popularity,
                dtype=np.float64,
            ).reshape(-1).copy()
            if weights.shape[0] != n_items + 1:
                raise ValueError(f"popularity must have n_items + 1 = {n_items + 1} entries (index 0 = padding), "
                                 f"got {weights.shape[0]}")
            if not np.all(np.isfinite(weights)) or (weights < 0).any():
                raise ValueError("popularity must be finite and non-negative")
    else:
        raise ValueError(f"strategy must be 'uniform' or 'popularity', not {strategy!r}")
    weights[0] = 0.0
    total = weights.sum()
    if total <= 0:
        raise ValueError("popularity gives every item weight 0")
    return weights / total


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a plain sort: faster than ``np.unique``'s hashing for large int arrays)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _contains(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Membership of ``queries`` in the sorted distinct array ``sorted_keys`` (binary search)."""
    if len(sorted_keys) == 0:
        return np.zeros(queries.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return sorted_keys[pos] == queries


def _first_valid(
    stream: np.ndarray, rows: np.ndarray, interacted_keys: np.ndarray, n_cols: int, n_negatives: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of an i.i.d. candidate ``stream`` ``[R, M]``: the first ``n_negatives`` distinct candidates
    the user never interacted with, in draw order. Keeping the first distinct allowed draws of an i.i.d.
    stream is exactly successive sampling without replacement (each pick ~ weights renormalised over the
    items still allowed), which is what ``numpy``'s ``choice(replace=False, p=...)`` does.

    Returns ``(complete, picks)``: a bool mask of rows that got enough, and their picks ``[sum(complete), n]``.
    """
    # work on each row sorted by item: repeats become neighbours (a stable sort keeps the earliest draw
    # first among equals) and the (user, item) keys come out globally sorted, which speeds up the lookup
    order = np.argsort(stream, axis=1, kind="stable")
    sorted_items = np.take_along_axis(stream, order, axis=1)
    valid_sorted = ~_contains(interacted_keys, rows[:, None] * n_cols + sorted_items)
    valid_sorted[:, 1:] &= sorted_items[:, 1:] != sorted_items[:, :-1]
    valid = np.empty_like(valid_sorted)
    np.put_along_axis(valid, order, valid_sorted, axis=1)
    position = np.cumsum(valid, axis=1)
    complete = position[:, -1] >= n_negatives
    take = valid[complete] & (position[complete] <= n_negatives)
    return complete, stream[complete][take].reshape(-1, n_negatives)


def sample_negatives(
    split_or_histories: LeaveOneOutSplit | Sequence[np.ndarray],
    n_items: int | None = None,
    n_negatives: int = 100,
    strategy: str = "uniform",
    popularity: np.ndarray | torch.Tensor | None = None,
    seed: int | Sequence[int] = 0,
) -> torch.Tensor:
    """Draw, for every user, ``n_negatives`` distinct items the user never interacted with.

    Args:
        split_or_histories: a :class:`LeaveOneOutSplit` (its ``full`` sequences are used: training items
            *and* the validation and test targets are all excluded), or one id array per user.
        n_items: catalogue size; defaults to ``split.n_items`` for a split (required for plain histories).
        n_negatives: negatives per user (100 for ``uni100`` / ``pop100``).
        strategy: ``"uniform"`` (``uni100``): every non-interacted item equally likely;
            ``"popularity"`` (``pop100``): successive draws without replacement, each proportional to the
            item's popularity among the items still allowed.
        popularity: interaction count (or any non-negative weight) of every item id, shape ``[n_items + 1]``
            (index 0 ignored). **Default: counted over the whole given data** — for a split, the full
            sequences including the validation and test interactions — as RecBole does. Pass e.g. counts
            over ``split.train`` to use training popularity only. Items of weight 0 are never drawn.
        seed: seed (or sequence of ints) of the ``numpy.random.Generator`` used; same seed, same draw.

    Returns:
        ``LongTensor[U, n_negatives]`` of item ids in ``1..n_items``, row u for user u, in draw order.

    Raises:
        ValueError: a user with fewer than ``n_negatives`` drawable non-interacted items, an id outside
            ``1..n_items``, a bad strategy or popularity vector.
    """
    histories = _histories(split_or_histories)
    if n_items is None:
        if not isinstance(split_or_histories, LeaveOneOutSplit):
            raise ValueError("n_items is required when passing plain histories")
        n_items = split_or_histories.n_items
    n_items, n_users = int(n_items), len(histories)
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    if n_users == 0:
        return torch.zeros((0, n_negatives), dtype=torch.long)
    weights = _base_distribution(histories, n_items, strategy, popularity)

    # interacted (user, item) pairs as sorted unique keys user * (n_items + 1) + item
    n_cols = n_items + 1
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=n_users)
    items = np.concatenate(histories)
    if items.size and (items.min() < 1 or items.max() > n_items):
        raise ValueError(f"histories hold item ids outside 1..{n_items}")
    interacted_keys = _sorted_unique(np.repeat(np.arange(n_users, dtype=np.int64), lengths) * n_cols + items)

    # feasibility: every user needs n_negatives non-interacted items of positive weight
    drawable = weights > 0
    n_drawable = int(drawable.sum()) - np.bincount(
        interacted_keys // n_cols, weights=drawable[interacted_keys % n_cols], minlength=n_users
    ).astype(np.int64)
    if (n_drawable < n_negatives).any():
        bad = np.flatnonzero(n_drawable < n_negatives)
        raise ValueError(
            f"{len(bad)} user(s) have fewer than {n_negatives} non-interacted items to draw negatives from "
            f"(e.g. user {int(bad[0])}: {int(n_drawable[bad[0]])} of {n_items} items with {strategy} weight > 0); "
            f"use fewer negatives or full ranking"
        )

    # expected draws per user grow as 1 / (weight mass the user has not interacted with): users are grouped
    # by a stream width (geometric steps of 1.25) so that heavy users do not inflate everyone's work
    allowed_mass = 1.0 - np.bincount(
        interacted_keys // n_cols, weights=weights[interacted_keys % n_cols], minlength=n_users
    )
    need = 1.2 * n_negatives / np.maximum(allowed_mass, 1e-12) + 16
    widths = np.ceil(1.25 ** np.ceil(np.log(need) / np.log(1.25))).astype(np.int64)
    # beyond a catalogue's worth of draws, the exact per-user draw (O(n_items) per pick, ~0.1 ms of Python
    # overhead per user) is as cheap; tiny catalogues keep a floor so they stay vectorised
    max_width = max(n_cols, 8 * n_negatives + 64)

    rng = np.random.default_rng(seed)
    cdf = None if strategy == "uniform" else np.cumsum(weights)
    if cdf is not None:
        cdf /= cdf[-1]  # exactly 1.0 at the top: a draw in [0, 1) never lands past the last item
    out = np.zeros((n_users, n_negatives), dtype=np.int64)
    leftovers: list[tuple[int, np.ndarray]] = []
    for width in np.unique(widths):  # ascending, deterministic order: same seed, same draw
        rows = np.flatnonzero(widths == width)
        if width > max_width:  # users who interacted with most of the drawable mass
            leftovers.extend((int(u), np.zeros(0, dtype=np.int64)) for u in rows)
            continue
        chunk = max(1, _CHUNK_ELEMENTS // int(width))
        for start in range(0, len(rows), chunk):
            leftovers.extend(
                _draw_rows(rows[start : start + chunk], int(width), cdf, rng, interacted_keys, n_cols, n_negatives, out)
            )
    for u, row_stream in leftovers:
        # exact per-user continuation of the same successive sampling, keeping the row's picks so far
        fresh = row_stream[~np.isin(row_stream, histories[u])]
        _, first = np.unique(fresh, return_index=True)
        picks = fresh[np.sort(first)][:n_negatives]
        allowed = weights.copy()
        allowed[histories[u]] = 0.0
        allowed[picks] = 0.0
        allowed /= allowed.sum()
        rest = rng.choice(n_cols, size=n_negatives - len(picks), replace=False, p=allowed)
        out[u] = np.concatenate([picks, rest])
    if leftovers:
        logger.debug("sample_negatives: %d user(s) drawn by the exact per-user fallback", len(leftovers))
    return torch.from_numpy(out)


def _draw_rows(
    rows: np.ndarray,
    width: int,
    cdf: np.ndarray | None,
    rng: np.random.Generator,
    interacted_keys: np.ndarray,
    n_cols: int,
    n_negatives: int,
    out: np.ndarray,
) -> list[tuple[int, np.ndarray]]:
    """Vectorised rejection sampling for ``rows``: fill ``out[rows]``; return ``(user, stream)`` of the rows
    still short after a few doublings of their i.i.d. stream (finished exactly per user by the caller)."""
    stream = np.zeros((len(rows), 0), dtype=np.int64)
    for _ in range(_MAX_REJECTION_ROUNDS):
        # extend each row's i.i.d. stream (earlier draws keep their place) and select again
        if cdf is None:  # uniform over 1..n_items
            draws = rng.integers(1, n_cols, size=(len(rows), width))
        else:  # inverse CDF: item i is hit with probability cdf[i] - cdf[i-1] (never 0 or a zero-weight item)
            draws = np.searchsorted(cdf, rng.random((len(rows), width)), side="right")
        stream = np.concatenate([stream, draws], axis=1)
        complete, picks = _first_valid(stream, rows, interacted_keys, n_cols, n_negatives)
        out[rows[complete]] = picks
        rows, stream = rows[~complete], stream[~complete]
        if len(rows) == 0:
            return []
        width = stream.shape[1]  # doubles the stream of the rows still short
    return [(int(u), s) for u, s in zip(rows, stream)]


# -- metrics --------------------------------------------------------------------------------------------
def compute_metrics(
    ranks: torch.Tensor | np.ndarray | Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """HR@K, NDCG@K and MRR@K, averaged over users, from 0-based pessimistic ranks.

    Per user with rank r: HR@K = [r < K], NDCG@K = [r < K] / log2(r + 2), MRR@K = [r < K] / (r + 1).

    Returns:
        ``{"HR@5": ..., "NDCG@5": ..., "MRR@5": ..., "HR@10": ...}`` in the order of ``ks``.

    Raises:
        ValueError: no ranks, a negative rank, or a K < 1.
    """
    r = (ranks.detach().cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)).reshape(-1)
    if r.size == 0:
        raise ValueError("compute_metrics needs at least one rank")
    r = r.astype(np.float64)
    if (r < 0).any():
        raise ValueError("ranks must be >= 0")
    out: dict[str, float] = {}
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"cut-off K must be >= 1, got {k}")
        hit = r < int(k)
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).mean())
        out[f"MRR@{k}"] = float(np.where(hit, 1.0 / (r + 1.0), 0.0).mean())
    return out
