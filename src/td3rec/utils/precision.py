"""Reduced-precision learner work (autocast): ``fp32`` (default, exact) or ``bf16``.

Autocast runs the learners' matrix products in bfloat16 while parameters, optimiser states and the summary stay
float32. bf16 keeps float32's range, so the second-order meta-gradient needs no loss scaling. fp16 is not offered:
its narrow range overflowed in the double backward through the inner updates (NaN meta-gradients, measured on
CPU), and loss scaling through a differentiable unroll is not implemented.
"""

from __future__ import annotations

import contextlib

import torch

from td3rec.errors import ConfigError

PRECISIONS = ("fp32", "bf16")
_DTYPES = {"bf16": torch.bfloat16}


def check_precision(precision: str) -> None:
    """Raise :class:`ConfigError` for an unknown precision name."""
    if precision not in PRECISIONS:
        hint = " (fp16 overflows in the meta-gradient; use bf16)" if precision == "fp16" else ""
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}{hint}")


def learner_autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """A context in which learner computations run at ``precision`` on ``device`` (no-op for fp32)."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])
