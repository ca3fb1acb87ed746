"""Seeding and deterministic settings."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU torch generator seeded with ``seed``.

    Prefer passing the returned generator (or ``np.random.default_rng(seed)``) explicitly over relying on
    global state: that is what keeps runs reproducible when code paths change.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
