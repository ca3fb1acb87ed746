"""Names of the learners and the one way to build them: ``build_model(name, n_items, max_len, **overrides)``.

A checkpoint rebuilds its model with ``build_model(name, n_items, max_len, **dataclasses.asdict(model.config))``.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

from td3rec.errors import ConfigError
from td3rec.models.base import SequentialRecommender
from td3rec.models.bert4rec import BERT4Rec, BERT4RecConfig
from td3rec.models.config import ModelConfig
from td3rec.models.gru4rec import GRU4Rec, GRU4RecConfig
from td3rec.models.narm import NARM, NARMConfig
from td3rec.models.sasrec import SASRec, SASRecConfig

MODEL_NAMES: tuple[str, ...] = ("sasrec", "gru4rec", "narm", "bert4rec")

_MODELS: dict[str, tuple[type[SequentialRecommender], type[ModelConfig]]] = {
    "sasrec": (SASRec, SASRecConfig),
    "gru4rec": (GRU4Rec, GRU4RecConfig),
    "narm": (NARM, NARMConfig),
    "bert4rec": (BERT4Rec, BERT4RecConfig),
}


def _lookup(name: str) -> tuple[type[SequentialRecommender], type[ModelConfig]]:
    key = str(name).strip().lower()
    if key not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    return _MODELS[key]


def model_config_class(name: str) -> type[ModelConfig]:
    """The config dataclass of model ``name`` (case-insensitive)."""
    return _lookup(name)[1]


def make_model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of model ``name`` with its defaults replaced by ``overrides`` (validated)."""
    config_class = model_config_class(name)
    valid = [field.name for field in dataclasses.fields(config_class)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {config_class.model_name!r}; "
            f"valid options: {', '.join(valid)}"
        )
    return config_class(**overrides)


def max_input_length(name: str, max_len: int) -> int | None:
    """The longest input sequence learner ``name`` built with ``max_len`` accepts (``None``: no limit, the
    recurrent learners); sequences longer than this would overflow its position table."""
    model_class, _ = _lookup(name)
    return max_len if model_class.positional else None


def build_model(name: str, n_items: int, max_len: int, **overrides: Any) -> SequentialRecommender:
    """A freshly initialised learner ``name`` for ``n_items`` items and sequences of at most ``max_len`` items.

    ``overrides`` replace fields of the model's config dataclass (see :func:`model_config_class`); an unknown
    model name or option raises :class:`ConfigError` listing the valid ones. Initialisation uses torch's
    global RNG (seed it for reproducible weights).
    """
    model_class, _ = _lookup(name)
    config = make_model_config(name, **overrides)
    n_items = _positive_int(config, "n_items", n_items)
    max_len = _positive_int(config, "max_len", max_len)
    return model_class(n_items, max_len, config)


def _positive_int(config: ModelConfig, label: str, value: Any) -> int:
    """``value`` as a Python int >= 1 (NumPy / torch integer scalars accepted)."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number < 1:
        raise config.error(f"{label} must be a positive integer, got {value!r}")
    return number
