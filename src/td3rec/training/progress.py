"""Where a full-data training run stands, in a form that can be checkpointed and restored exactly.

Together with the model, the Adam state and the random generator states (:mod:`td3rec.utils.rng`),
:class:`TrainProgress` is everything ``td3rec train --resume`` needs to continue bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from td3rec.errors import DataError


@dataclass
class TrainProgress:
    """Bookkeeping of the training loop.

    Attributes:
        epoch: the current epoch (1-based).
        order: the current epoch's permutation of the training examples; ``None`` before the epoch starts.
        position: batches of the current epoch already done.
        loss_sum: sum of ``loss x batch size`` over the epoch's batches so far (for the epoch's mean loss).
        steps: optimiser steps done in all (skipped ones included).
        done: training stopped (last epoch or early stop); only testing and the final report are left.
        best_value / best_epoch / best_state: best validation value so far, its epoch and its weights.
        stale: epochs since the last improvement (the patience counter).
        history: one row per epoch.
        skipped: steps skipped because the loss was non-finite; nonfinite_streak: such steps in a row.
        epoch_seconds: time of each finished epoch; epoch_elapsed: seconds already spent in the current one.
    """

    epoch: int = 1
    order: torch.Tensor | None = None
    position: int = 0
    loss_sum: float = 0.0
    steps: int = 0
    done: bool = False
    best_value: float = float("-inf")
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    stale: int = 0
    history: list[dict] = field(default_factory=list)
    skipped: int = 0
    nonfinite_streak: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_elapsed: float = 0.0

    def to_payload(self) -> dict[str, Any]:
        """A plain dict for the checkpoint (tensors on the CPU)."""
        payload = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.best_state is not None:
            payload["best_state"] = {k: v.detach().cpu() for k, v in self.best_state.items()}
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "TrainProgress":
        names = {f.name for f in dataclasses.fields(cls)}
        if set(payload) != names:
            raise DataError("the resume checkpoint's progress record does not match this td3rec version")
        return cls(**payload)
