"""The summary a distillation learns, by ``DistillConfig.method``: TD3's Tucker factors or Farzi Data.

Both classes give the distiller the same interface: ``core_product()`` (read-out queries ``W``),
``item_factor`` (read-out keys; logits = ``W · item_factor^T``), ``parameters()``, ``tensors()`` (what the
file stores), ``metadata()`` (``method`` and its settings), ``num_parameters(include_item_factor)`` and
``source(chunk_size)`` (the detached summary as evaluation data).
"""

from __future__ import annotations

import torch

from td3rec.distill.config import DistillConfig
from td3rec.summary.farzi import FarziConfig, FarziSummary
from td3rec.summary.tucker import TuckerConfig, TuckerSummary


def build_summary(config: DistillConfig, item_factor: torch.Tensor,
                  generator: torch.Generator | None = None) -> TuckerSummary | FarziSummary:
    """A freshly initialised summary of ``config.method`` over the teacher's item factor ``V`` (times
    ``config.item_factor_scale``; the factor before V is divided by it, so the initial distributions are the
    unscaled summary's)."""
    scale = config.item_factor_scale
    summary = _build(config, item_factor * scale if scale != 1 else item_factor, generator)
    if scale != 1:
        with torch.no_grad():
            if isinstance(summary, TuckerSummary):
                summary.G /= scale
            elif summary.factorised:
                summary.D /= scale
    return summary


def _build(config: DistillConfig, item_factor: torch.Tensor,
           generator: torch.Generator | None) -> TuckerSummary | FarziSummary:
    if config.method == "farzi":
        return FarziSummary(
            FarziConfig(n_sequences=config.n_sequences, seq_len=config.seq_len, latent_dim=config.farzi_latent_dim,
                        decoder=config.farzi_decoder, init_std=config.init_std,
                        learn_item_factor=config.learn_item_factor, chunk_size=config.chunk_size),
            item_factor, generator=generator)
    return TuckerSummary(
        TuckerConfig(n_sequences=config.n_sequences, seq_len=config.seq_len, d1=config.d1, d2=config.d2,
                     init_std=config.init_std, learn_item_factor=config.learn_item_factor,
                     chunk_size=config.chunk_size),
        item_factor, generator=generator)
