"""Meta-gradient balancing across architectures (``balance_gradients``).

Different learners give meta-gradients of very different sizes: on ML-100k SASRec's are ~0.4 in norm, NARM's
~3–6 with spikes of 10²–10³ and BERT4Rec's occasionally 10¹⁰ (an exploding back-propagation through a long
recurrent or masked unroll). A single global clip turns each such spike into a full-size outer step in an
arbitrary direction, and lets the noisiest learner steer Adam's moments. Balancing divides each step's
meta-gradient by ``max(norm, m)``, where ``m`` is the median norm of the recent steps that trained the same
architectures: a typical step of any architecture has norm ≈ 1, a smaller one proportionally less, and a spike
exactly 1. The raw norms live in the run's progress record, so a resumed run balances bit for bit.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable

import torch


def balance_scale(history: list[float], norm: float) -> float:
    """The factor a meta-gradient of norm ``norm`` is multiplied by, given the recent norms of its architectures
    (``history``; empty on their first step, where the step's own norm is the reference)."""
    reference = statistics.median(history) if history else norm
    bound = max(norm, reference)
    return 1.0 / bound if bound > 0 else 1.0


def balance_meta_gradient(parameters: Iterable[torch.Tensor], norms: dict[str, list[float]], key: str,
                          window: int) -> tuple[float, float]:
    """Scale the gradients of ``parameters`` in place by :func:`balance_scale` against ``norms[key]`` (the last
    ``window`` raw norms of the steps that trained the architectures ``key``), then record this step's raw norm
    there. A non-finite norm is neither scaled nor recorded (the non-finite guard skips the step).
    Returns ``(raw norm, scale)``."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0
    if not math.isfinite(norm):
        return norm, 1.0
    history = norms.setdefault(key, [])
    scale = balance_scale(history, norm)
    for g in grads:
        g.mul_(scale)
    history.append(norm)
    del history[:-window]
    return norm, scale
