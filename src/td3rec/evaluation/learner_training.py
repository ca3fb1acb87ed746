"""Training a fresh learner on a summary or a real subset for a fixed number of steps (DESIGN §5).

The schedule is the reference one: the inner optimiser's settings, batches taken in a fixed cyclic order, and
the same augmented objective as in distillation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from td3rec.config import check_values
from td3rec.distill.objective import draw_cut_positions, sequence_loss
from td3rec.errors import ConfigError
from td3rec.evaluation.sources import HardSequences, SoftSequences
from td3rec.models.base import SequentialRecommender


@dataclass
class LearnerTrainingConfig:
    """How a learner is trained on a summary or a subset.

    Attributes:
        steps: optimiser steps (reference 200).
        optimizer: ``adam`` (reference) or ``sgd``.
        lr: learning rate (reference 0.005).
        weight_decay: L2 weight decay (reference 5e-5).
        batch_size: sequences per step (reference 15), fixed cyclic order.
        augment: add the random-cut objective (reference: yes).
        chunk_size: item-chunk size for large catalogues (None = one chunk).
    """

    steps: int = 200
    optimizer: str = "adam"
    lr: float = 0.005
    weight_decay: float = 5e-5
    batch_size: int = 15
    augment: bool = True
    chunk_size: int | None = None

    def validate(self) -> None:
        """Reject settings no learner can be trained with, before any work."""
        check_values(self)
        if self.steps <= 0 or self.batch_size <= 0:
            raise ConfigError(f"training.steps and training.batch_size must be positive, got {self.steps} and "
                              f"{self.batch_size}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"training.optimizer must be adam or sgd, not {self.optimizer!r}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"training.lr must be positive and training.weight_decay >= 0, got {self.lr} and "
                              f"{self.weight_decay}")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise ConfigError(f"training.chunk_size must be positive or None, got {self.chunk_size}")


def train_learner(
    model: SequentialRecommender,
    data: SoftSequences | HardSequences,
    config: LearnerTrainingConfig,
    generator: torch.Generator | None = None,
) -> SequentialRecommender:
    """Train ``model`` in place on ``data`` (on the model's device); returns it in eval mode."""
    device = next(model.parameters()).device
    data = data.to(device)
    if config.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(data)
    b = min(config.batch_size, n)
    model.train()
    for step in range(config.steps):
        rows = ((torch.arange(b) + step * b) % n).to(device)
        inputs = data.vectors(model, rows)
        full = data.lengths(rows)
        cuts = draw_cut_positions(full, generator) if config.augment else None
        loss = sequence_loss(model, inputs, full, model.item_vectors(), config.augment, cuts, config.chunk_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model
