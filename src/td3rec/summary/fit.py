"""Fitting a summary to real item sequences: the start of a distillation initialised from real data.

A summary normally starts as near-uniform noise. Starting it as a real subset instead (the Longest-n users,
say) gives the outer loop a summary that already teaches something from its first step. The summary's own
parameters (TD3's U, T, G; Farzi's latent summary and decoder) are fitted by Adam so that the distribution at
each synthetic position puts its mass on the real item there: the mean cross-entropy of ``softmax(W V^T)`` against
the items, exact over the catalogue, computed in blocks of sequences so that memory stays bounded. A real
sequence shorter than the summary's length leaves its last positions free (not fitted).
"""

from __future__ import annotations

import torch

#: largest ``rows × L × |I|`` block of logits held at once while fitting
FIT_BLOCK = 2**24


def fit_to_items(summary, items: torch.Tensor, steps: int, lr: float = 0.05, block: int = FIT_BLOCK) -> dict:
    """Fit ``summary`` (anything with ``parameters()``, ``core_product()`` and ``item_factor``) in place so
    that position ``(a, b)`` puts its mass on item row ``items[a, b]`` (0-based; -1 = free). Returns the fit's
    first and last loss and ``top1``, the share of fitted positions whose most probable item is the target."""
    n, L = items.shape
    keys = summary.item_factor
    fitted = items >= 0
    if not fitted.any() or steps <= 0:
        return {"steps": 0, "first_loss": None, "last_loss": None, "top1": None}
    opt = torch.optim.Adam(summary.parameters(), lr=lr)
    rows_per_block = max(1, block // max(L * keys.shape[0], 1))
    count = int(fitted.sum())
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for start in range(0, n, rows_per_block):
            rows = torch.arange(start, min(start + rows_per_block, n), device=items.device)
            mask = fitted[rows]
            if not mask.any():
                continue
            logits = summary.core_product()[rows][mask] @ keys.T  # [positions, |I|]
            loss = torch.nn.functional.cross_entropy(logits, items[rows][mask], reduction="sum") / count
            loss.backward()
            total += float(loss.detach())
        opt.step()
        losses.append(total)
    with torch.no_grad():
        hits = 0
        for start in range(0, n, rows_per_block):
            rows = torch.arange(start, min(start + rows_per_block, n), device=items.device)
            mask = fitted[rows]
            best = (summary.core_product()[rows][mask] @ keys.T).argmax(-1)
            hits += int((best == items[rows][mask]).sum())
    return {"steps": steps, "first_loss": losses[0], "last_loss": losses[-1], "top1": hits / count}
