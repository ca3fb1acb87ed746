"""Position helpers shared by the learners: which positions are real, and picking one position per row.

Inputs are right-padded (``data/sequences.py``): row ``b`` has real positions ``0 .. lengths[b] - 1``. Every
mask here is derived from ``lengths`` only, never from item ids, so hard and soft inputs behave the same.
"""

from __future__ import annotations

import torch


def valid_positions(lengths: torch.Tensor, n_positions: int, device: torch.device) -> torch.Tensor:
    """Bool ``[B, n_positions]``: ``True`` at positions ``< lengths`` (the real items of each row)."""
    pos = torch.arange(n_positions, device=device)
    return pos.unsqueeze(0) < lengths.to(device).unsqueeze(1)


def gather_positions(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Row-wise pick ``hidden[b, index[b]]`` from ``[B, P, H]``, giving ``[B, H]``."""
    index = index.to(device=hidden.device, dtype=torch.long)
    index = index.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
    return hidden.gather(1, index).squeeze(1)


def check_input_length(n_positions: int, max_positions: int, model: str) -> None:
    """Fail clearly when a batch is longer than the model's position table (instead of an index error)."""
    if n_positions > max_positions:
        raise ValueError(
            f"{model}: inputs have {n_positions} positions but the model was built with max_len={max_positions}; "
            "truncate the sequences or rebuild the model with a larger max_len"
        )
