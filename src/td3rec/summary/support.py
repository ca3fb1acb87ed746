"""Sparse supports: the summary restricted to the top-k items of each position, and sampled normalisers.

Two things in a distillation step grow with the catalogue ``|I|``: the summary's read-out
``softmax(W V^T) @ E`` at every inner step (and its double backward in the window), and the learners' own
normaliser ``logsumexp(h E^T)`` (inner loss and the real-batch cross-entropy). This module makes both
independent of ``|I|``:

- **Top-k support** (:func:`top_k_support`, :func:`sparse_readout`): the distribution at each synthetic
  position is the softmax over its ``k`` highest-scoring items under the current factors (selected once per
  outer step, without graph); gradients reach the factors through the kept logits. With ``k >= |I|`` the
  support is every item and the read-out is exactly the dense one. A summary distilled with a support stores
  its ``support_size``, and every reader (evaluation, export, inspection) applies the same restriction, so the
  distribution learners are judged on is the one that was distilled.
- **Sampled normaliser** (:func:`sampled_logsumexp`): ``log sum_i exp(h . e_i)`` estimated from the rows'
  *positive* items (always included, exactly) and ``m`` negatives drawn uniformly from the catalogue with
  replacement, weighted by ``|I| / m`` (log-Q correction for uniform sampling); a negative that is also a
  positive of its row is dropped, so the estimate of the partition sum is unbiased. With every item as the
  negatives (:func:`all_items`) the result is exact.
"""

from __future__ import annotations

import math

import torch

#: item chunk used while selecting supports (bounds memory at ``queries × chunk``)
SELECT_CHUNK = 8192


def top_k_support(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk_size: int = SELECT_CHUNK) -> torch.Tensor:
    """Indices ``[..., k]`` (0-based item rows, descending score) of the ``k`` largest ``queries · keys^T`` per
    query; ``queries [..., d]``, ``keys [I, d]``. Streams over item chunks: memory ``O(queries × (k + chunk))``.
    ``k >= I`` returns every item in index order (the dense limit)."""
    n_items = keys.shape[0]
    lead = queries.shape[:-1]
    if k >= n_items:
        return torch.arange(n_items, device=queries.device).expand(*lead, n_items)
    q = queries.detach().reshape(-1, queries.shape[-1])
    empty_val = q.new_full((q.shape[0], 0), float("-inf"))
    empty_idx = torch.zeros(q.shape[0], 0, dtype=torch.long, device=q.device)
    _, best = _stream_top_k(q, keys.detach(), k, 0, n_items, chunk_size, empty_val, empty_idx)
    return best.reshape(*lead, k)


def refresh_support(queries: torch.Tensor, keys: torch.Tensor, support: torch.Tensor, part: int, parts: int,
                    chunk_size: int = SELECT_CHUNK) -> torch.Tensor:
    """The top ``k`` of each position among its current ``support [..., k]`` (re-scored) and the items of catalogue
    part ``part`` of ``parts`` (equal slices of the item rows): sweeping the parts over ``parts`` outer steps
    costs ``1 / parts`` of a full selection per step while the kept items stay scored by the current factors.
    With ``parts = 1`` it is exactly :func:`top_k_support`."""
    n_items, k = keys.shape[0], support.shape[-1]
    if k >= n_items:
        return support
    lead = queries.shape[:-1]
    q = queries.detach().reshape(-1, queries.shape[-1])
    keys = keys.detach()
    current = support.reshape(-1, k)
    scores = torch.einsum("qd,qkd->qk", q, keys[current])
    lo, hi = part * n_items // parts, (part + 1) * n_items // parts
    _, best = _stream_top_k(q, keys, k, lo, hi, chunk_size, scores, current)
    return best.reshape(*lead, k)


def _stream_top_k(q: torch.Tensor, keys: torch.Tensor, k: int, lo: int, hi: int, chunk_size: int,
                  best_val: torch.Tensor, best_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the top ``k`` of item rows ``lo .. hi - 1`` into a running ``(best_val, best_idx)`` per query; an
    item already in ``best_idx`` is not counted twice."""
    for start in range(lo, hi, chunk_size):
        stop = min(start + chunk_size, hi)
        scores = q @ keys[start:stop].T
        inside = (best_idx >= start) & (best_idx < stop)  # already held: drop its second copy
        if inside.any():  # (scatter_add: an index clamped onto a held one must not undo its mark)
            at = (best_idx - start).clamp(0, stop - start - 1)
            held = torch.zeros_like(scores).scatter_add_(1, at, inside.to(scores.dtype)) > 0
            scores = scores.masked_fill(held, float("-inf"))
        vals, idx = scores.topk(min(k, stop - start), dim=1)  # the chunk's own top k, then merge
        vals, pos = torch.cat([best_val, vals], dim=1).topk(min(k, best_val.shape[1] + vals.shape[1]), dim=1)
        best_idx = torch.cat([best_idx, idx + start], dim=1).gather(1, pos)
        best_val = vals
    return best_val, best_idx


def support_probabilities(W: torch.Tensor, support_keys: torch.Tensor) -> torch.Tensor:
    """The supports' probabilities ``[..., k]`` (summing to one per position) from the queries ``W [..., d]`` and
    the support items' keys ``support_keys [..., k, d]`` (``keys[support]``, gathered once where they are reused)."""
    return torch.softmax(torch.einsum("...d,...kd->...k", W, support_keys), dim=-1)


def mix(probs: torch.Tensor, support_values: torch.Tensor) -> torch.Tensor:
    """``sum_j probs[..., j] · support_values[..., j, :]``: the supports' mixture of item vectors ``[..., H]``."""
    return torch.einsum("...k,...kh->...h", probs, support_values)


def sparse_readout(W: torch.Tensor, keys: torch.Tensor, E: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``softmax over the support of (W keys^T) @ E``: ``W [..., d]``, ``keys [I, d]``, ``E [I, H]``,
    ``support [..., k]`` -> ``[..., H]``. Twice differentiable in ``W``, ``keys`` and ``E``."""
    return mix(support_probabilities(W, keys[support]), E[support])


def draw_negatives(n_items: int, m: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """``m`` item rows drawn uniformly with replacement from ``0 .. n_items - 1`` (drawn on CPU so a seed gives
    the same items on every device)."""
    return torch.randint(0, n_items, (m,), generator=generator).to(device)


def all_items(n_items: int, device: torch.device | str) -> torch.Tensor:
    """Every item row once: the negatives for which :func:`sampled_logsumexp` is exact."""
    return torch.arange(n_items, device=device)


def sampled_logsumexp(h: torch.Tensor, E: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Estimate of ``logsumexp(h E^T)`` per row: ``h [B, H]``, ``E [I, H]``, ``positives [B, k]`` (item rows
    that must be counted exactly: each row's targets; distinct within a row), ``negatives [m]`` (item rows
    shared by all rows, a uniform draw with replacement, each weighted ``I / m``). With every item once as
    the negatives (:func:`all_items`; weight 1) the result is exact."""
    n_items, m = E.shape[0], negatives.shape[0]
    pos = torch.einsum("bh,bkh->bk", h, E[positives])
    neg = h @ E[negatives].T
    dup = _among(negatives, positives)  # [B, m]: counted among the row's positives already
    neg = (neg + math.log(n_items / m)).masked_fill(dup, float("-inf"))
    return torch.logsumexp(torch.cat([pos, neg], dim=1), dim=1)


def _among(negatives: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """``[B, m]``: whether negative ``j`` is one of row ``b``'s positives (a binary search in each sorted row)."""
    rows, k = positives.shape
    query = negatives.expand(rows, -1).contiguous()
    if k == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    ordered = positives.sort(dim=1).values
    at = torch.searchsorted(ordered, query).clamp(max=k - 1)
    return ordered.gather(1, at) == query
