"""Hand-built summary files for export / inspect tests: random Tucker factors with peaked distributions and
raw item ids that differ from the internal ids, so that a wrong id map shows."""

from __future__ import annotations

from pathlib import Path

import torch

from td3rec.summary.io import save_summary


def item_tokens(n_items: int) -> list[str]:
    """Raw ids in an order unrelated to the internal ids: strings, and numbers with leading zeros."""
    perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(1)).tolist()
    return [f"B{p:04d}X" if p % 2 else f"{p:05d}" for p in perm]


def random_factors(n: int = 4, length: int = 6, n_items: int = 40, d1: int = 3, d2: int = 3, d3: int = 8,
                   scale: float = 1.5, seed: int = 0) -> dict[str, torch.Tensor]:
    """U, T, G, V (float32) whose logits have a spread of a few nats: neither uniform nor one-hot."""
    g = torch.Generator().manual_seed(seed)
    return {"U": torch.randn(n, d1, generator=g), "T": torch.randn(length, d2, generator=g),
            "G": torch.randn(d1, d2, d3, generator=g) * scale / (d1 * d2) ** 0.5,
            "V": torch.randn(n_items, d3, generator=g)}


def write_summary(path: Path, tensors: dict[str, torch.Tensor] | None = None, tokens: list[str] | None = None,
                  **metadata) -> Path:
    """Save ``tensors`` (default :func:`random_factors`) with the metadata ``td3rec distill`` writes."""
    tensors = tensors or random_factors()
    n_items = tensors["V"].shape[0]
    meta = {"method": "td3", "dataset": "hand-built", "dataset_fingerprint": "none", "n_items": n_items,
            "item_tokens": tokens if tokens is not None else item_tokens(n_items)}
    meta.update(metadata)
    save_summary(path, tensors, meta)
    return path
