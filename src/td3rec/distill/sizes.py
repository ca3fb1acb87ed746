"""The memory a distillation allocates up front, checked before any work (:mod:`td3rec.utils.memory`)."""

from __future__ import annotations

from typing import Any

from td3rec.models.registry import make_model_config
from td3rec.utils.memory import FLOAT_BYTES, TRAINED_COPIES, check_memory, input_bytes, model_bytes


def summary_bytes(config: Any, d3: int, n_items: int) -> int:
    """The summary's trained factors (with gradients and Adam moments) and its read-out queries ``W [n, L, d3]``
    with their gradient, for the summary of ``config`` (a :class:`~td3rec.distill.config.DistillConfig`)."""
    n, seq_len = config.n_sequences, config.seq_len
    if config.method == "farzi":
        latent = config.farzi_latent_dim
        decoder = latent * (d3 if config.farzi_decoder == "factorised" else n_items)
        factors = n * seq_len * latent + decoder
    else:
        factors = n * config.d1 + seq_len * config.d2 + config.d1 * config.d2 * d3
    return (factors * TRAINED_COPIES + 2 * n * seq_len * d3) * FLOAT_BYTES


def check_distill_memory(config: Any, n_items: int, n_examples: int, model: str, max_len: int,
                         options: dict | None) -> None:
    """Refuse a distillation whose summary, learner (``model`` with ``max_len`` and ``options``: the teacher's,
    or the one trained in the run) and padded real inputs (``n_examples`` rows) cannot fit in memory."""
    d3 = make_model_config(model, **(options or {})).feature_size
    need = (summary_bytes(config, d3, n_items) + model_bytes(model, n_items, max_len, options)
            + input_bytes(n_examples, config.max_len))
    check_memory(need, "this distillation", "lower n_sequences, seq_len, d1, d2, farzi_latent_dim or max_len")
