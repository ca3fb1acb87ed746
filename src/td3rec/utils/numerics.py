"""Guarding a training loop against non-finite losses and gradients.

A step whose loss or gradient norm is NaN or infinite is skipped (no parameter update), counted, and
reported; after ``limit`` such steps *in a row* the loop stops with :class:`~td3rec.errors.DivergedError`
(exit code 3), because skipping no longer helps: the run has diverged and needs other settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def all_finite(*values: torch.Tensor | float) -> bool:
    """True when every element of every value is finite."""
    for value in values:
        tensor = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        if not bool(torch.isfinite(tensor.detach()).all()):
            return False
    return True


@dataclass
class NonFiniteGuard:
    """Counts skipped steps.

    Attributes:
        limit: consecutive non-finite steps that stop the run (0 = never stop).
        total: non-finite (skipped) steps so far.
        streak: non-finite steps in a row up to now.
    """

    limit: int
    total: int = 0
    streak: int = 0

    def check(self, *values: torch.Tensor | float) -> bool:
        """Record one step; True when every value is finite (the update may be applied)."""
        if all_finite(*values):
            self.streak = 0
            return True
        self.total += 1
        self.streak += 1
        return False

    @property
    def exceeded(self) -> bool:
        """Whether the run must stop: ``limit`` non-finite steps in a row."""
        return self.limit > 0 and self.streak >= self.limit

    def message(self, what: str, step: int) -> str:
        """The one-line stop message."""
        return (f"stopped at step {step}: {what} was non-finite (NaN or inf) {self.streak} steps in a row "
                f"({self.total} skipped in all); the run diverged: lower the learning rate, enable gradient "
                "clipping or check the data, then start a new run")
