"""The learner's training objective on sequences given as input vectors (soft summaries or hard real data).

One function serves the distillation inner loop (functional parameters) and every learner trained on a
summary or a real subset during evaluation, so that both optimise exactly the same thing (DESIGN §4.2):
predict the last position from the ones before it and, with augmentation, a random cut position ``p`` of
each sequence from the prefix before it; the loss is the mean of the two cross-entropies.

For a soft target ``p`` over items and learner logits ``z = h E^T`` the cross-entropy is
``logsumexp(z) - h . (p @ E)``; ``p @ E`` is exactly the learner's input vector at the target position, so the
target term costs nothing extra and no ``[batch, |I|]`` distribution is ever built. For a hard target (one-hot
``p``) the same expression is the ordinary cross-entropy.
"""

from __future__ import annotations

from typing import Callable

import torch

from td3rec.summary.readout import logsumexp_scores

Encoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``(features [B, H], target positions [B]) -> logsumexp of the learner's scores [B]`` (e.g. a sampled estimate)
Normaliser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def next_vector_cross_entropy(
    encode: Encoder,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    item_vectors: torch.Tensor,
    chunk_size: int | None = None,
    normaliser: Normaliser | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of predicting ``inputs[i, lengths[i]]`` (a mixture of item vectors) from the first
    ``lengths[i]`` positions of row ``i``. ``normaliser``: replaces the exact ``logsumexp`` over every item."""
    features = encode(inputs, lengths)
    rows = torch.arange(inputs.shape[0], device=inputs.device)
    target = inputs[rows, lengths]
    if normaliser is None:
        lse = logsumexp_scores(features, item_vectors, chunk_size)
    else:
        lse = normaliser(features, lengths)
    return (lse - (features * target).sum(-1)).mean()


def sequence_loss(
    encode: Encoder,
    inputs: torch.Tensor,
    full_lengths: torch.Tensor,
    item_vectors: torch.Tensor,
    augment: bool,
    cut_positions: torch.Tensor | None = None,
    chunk_size: int | None = None,
    normaliser: Normaliser | None = None,
) -> torch.Tensor:
    """TD3's (augmented) objective on a batch of sequences of input vectors ``[B, L, H]`` with ``full_lengths``
    real positions (>= 2). ``cut_positions`` (in ``[1, full_lengths - 1]``) are the random cuts; draw them with
    :func:`draw_cut_positions`."""
    if not augment:
        return next_vector_cross_entropy(encode, inputs, full_lengths - 1, item_vectors, chunk_size, normaliser)
    if cut_positions is None:
        raise ValueError("augment=True needs cut_positions")
    # both objectives in one learner call (a batch of 2B rows): the mean of the two per-objective means
    both = next_vector_cross_entropy(encode, torch.cat([inputs, inputs]),
                                     torch.cat([full_lengths - 1, cut_positions]), item_vectors, chunk_size,
                                     normaliser)
    return both


def draw_cut_positions(full_lengths: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One cut position per row, uniform in ``[1, full_lengths - 1]`` (the prefix before it is never empty)."""
    u = torch.rand(full_lengths.shape, generator=generator, device="cpu").to(full_lengths.device)
    span = (full_lengths - 1).clamp(min=1)
    return 1 + (u * span).long().clamp(max=span - 1)
