"""The three initialisations of a learner judged on a summary (DESIGN §5); every result names its protocol.

- ``reference``: the full-data teacher of the same architecture with its linear and normalisation layers
  re-initialised (item and position embeddings, and recurrent layers, kept). What the TD3 reference code did;
  it leaks full-data training and is only for side-by-side comparison.
- ``shared-item-factor``: random learner whose item embedding starts from the summary's item factor V.
- ``scratch``: every weight random.
"""

from __future__ import annotations

import torch
from torch import nn

from td3rec.errors import ConfigError
from td3rec.models.base import SequentialRecommender
from td3rec.models.registry import build_model

PROTOCOLS = ("reference", "shared-item-factor", "scratch")


def reinit_linear_and_norm(model: SequentialRecommender, std: float = 0.02) -> None:
    """Re-initialise every ``nn.Linear`` (normal(0, std), zero bias) and ``nn.LayerNorm`` (ones, zeros)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def init_learner(
    arch: str,
    protocol: str,
    n_items: int,
    max_len: int,
    seed: int,
    teacher: SequentialRecommender | None = None,
    item_factor: torch.Tensor | None = None,
    model_options: dict | None = None,
    device: torch.device | str = "cpu",
) -> SequentialRecommender:
    """A learner of architecture ``arch`` initialised by ``protocol`` (seeded by ``seed``)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown initialisation {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    torch.manual_seed(seed)
    if protocol == "reference":
        if teacher is None:
            raise ConfigError(f"the reference initialisation needs a full-data {arch} teacher (pass its run with --teacher)")
        model = build_model(arch, n_items, max_len, **_config_dict(teacher))
        model.load_state_dict(teacher.state_dict())
        reinit_linear_and_norm(model)
        return model.to(device)
    model = build_model(arch, n_items, max_len, **(model_options or {}))
    if protocol == "shared-item-factor":
        if item_factor is None:
            raise ConfigError("the shared-item-factor initialisation needs a summary with an item factor V")
        if item_factor.shape != model.item_vectors().shape:
            raise ConfigError(
                f"shared-item-factor: V has shape {tuple(item_factor.shape)} but {arch}'s item embedding needs "
                f"{tuple(model.item_vectors().shape)}; set the learner's {type(model.config).feature_field} to "
                f"{item_factor.shape[1]}"
            )
        with torch.no_grad():
            model.item_embedding.weight[1 : n_items + 1] = item_factor.to(model.item_embedding.weight)
    return model.to(device)


def _config_dict(model: SequentialRecommender) -> dict:
    import dataclasses

    return dataclasses.asdict(model.config)
