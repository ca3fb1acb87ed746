"""Typed, validated configuration dataclasses of the learners.

Every learner has one config dataclass (``SASRecConfig`` ...) deriving from :class:`ModelConfig`. Values are
coerced to the declared field type on construction (so YAML or command-line strings such as ``"32"`` work)
and checked; any problem is a :class:`~td3rec.errors.ConfigError` naming the model and the field.
``dataclasses.asdict(config)`` is what a checkpoint stores to rebuild the model.
"""

from __future__ import annotations

import dataclasses
import typing

from td3rec.errors import ConfigError


@dataclasses.dataclass
class ModelConfig:
    """Base of the learner configs: type coercion on construction, then :meth:`validate`."""

    #: registry name of the model the config belongs to (used in error messages)
    model_name: typing.ClassVar[str] = "model"
    #: the field that sets the item-embedding / feature dimension (``hidden_size`` or ``embedding_size``)
    feature_field: typing.ClassVar[str] = "hidden_size"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = _coerce(self.model_name, field.name, getattr(self, field.name), hints[field.name])
            setattr(self, field.name, value)
        self.validate()

    @property
    def feature_size(self) -> int:
        """Dimension of the item embeddings and of the features (the base class's ``hidden_size``)."""
        return getattr(self, self.feature_field)

    def validate(self) -> None:
        """Check value ranges; subclasses extend it. Raises :class:`ConfigError`."""

    # -- helpers for validate() ---------------------------------------------------------------------
    def error(self, message: str) -> ConfigError:
        """A :class:`ConfigError` whose message starts with the model name."""
        return ConfigError(f"{self.model_name}: {message}")

    def _positive(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) < 1:
                raise self.error(f"{name} must be >= 1, got {getattr(self, name)}")

    def _probability(self, *names: str, closed: bool = False) -> None:
        """Dropout-like rates in ``[0, 1)`` (``[0, 1]`` with ``closed``)."""
        for name in names:
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
                upper = "1]" if closed else "1)"
                raise self.error(f"{name} must be in [0, {upper}, got {value}")


def _coerce(model: str, name: str, value: object, kind: type) -> object:
    """Convert ``value`` to ``kind`` (``int`` or ``float``), accepting numeric strings; reject anything else."""
    if isinstance(value, bool):
        raise ConfigError(f"{model}: {name} must be a number, got {value!r}")
    try:
        if kind is int:
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                return int(value.strip())
        elif kind is float:
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                return float(value.strip())
        else:  # pragma: no cover - only int and float fields exist
            return value
    except ValueError:
        pass
    raise ConfigError(f"{model}: {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
