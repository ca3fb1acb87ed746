"""Typed configuration: dataclasses loaded from YAML with ``key.sub=value`` command-line overrides.

Every option lives in a dataclass field with a docstring-style comment; YAML files and ``--set`` overrides
are checked against those fields, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from td3rec.errors import ConfigError

C = TypeVar("C")

#: the range of an integer setting (torch and NumPy hold integers in 64 bits)
INT_RANGE = (-(2**63), 2**63 - 1)
#: the range of a seed: what torch, NumPy and Python all accept
SEED_RANGE = (0, 2**63 - 1)


def to_dict(config: Any) -> dict:
    """A plain nested dict of a dataclass config (for YAML/JSON output)."""
    out = dataclasses.asdict(config)
    return _plain(out)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def from_dict(cls: type[C], data: dict | None, where: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and converting simple types."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown setting {where + unknown[0]!r}; valid settings here: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(hints[key], value, where + key)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Convert ``value`` to type ``tp`` (dataclasses, Optional, tuples, bool/int/float/str)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"setting {where!r} must be a mapping")
        return from_dict(tp, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _convert(args[0], value, where) if len(args) == 1 else value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        elif not isinstance(value, (list, tuple)):
            value = [value]  # one value for a list setting: a list of one
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_convert(inner, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"setting {where!r} must be a mapping")
        return dict(value)
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.lower()
                if low in ("true", "yes", "1", "on"):
                    return True
                if low in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"setting {where!r}: cannot read {value!r} as {tp.__name__}") from None
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. lr=0.001)")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not all(k.strip() for k in keys):
        raise ConfigError(f"override {text!r}: the key must be a setting name like lr or inner.lr, not {key!r}")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return [k.strip() for k in keys], value


def read_settings(path: str | Path | None, overrides: list[str] | None = None, what: str = "settings") -> dict:
    """The mapping in a YAML file (empty without ``path``), updated by ``key.sub=value`` overrides; ``what``
    names the expected keys in the error for a file that holds something else."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {p} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of {what}")
        data = loaded
    for text in overrides or []:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a group of settings")
        node[keys[-1]] = value
    return data


def check_values(config: Any, where: str = "") -> None:
    """Reject numbers no run can use, in every field of a config dataclass (nested ones included): a float that
    is NaN or infinite, an integer outside 64 bits, a seed (a field named ``seed`` or ``*_seed``) outside
    ``0 .. 2**63 - 1``. Generic over the fields, so a setting added later is checked too."""
    for f in dataclasses.fields(config):
        _check_value(getattr(config, f.name), where + f.name, f.name == "seed" or f.name.endswith("_seed"))


def _check_value(value: Any, where: str, is_seed: bool) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        check_values(value, where + ".")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(item, f"{where}.{key}", False)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_value(item, where, is_seed)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"setting {where!r} must be a finite number, got {value}")
    elif isinstance(value, int) and not isinstance(value, bool):
        low, high = SEED_RANGE if is_seed else INT_RANGE
        if not low <= value <= high:
            what = "a seed" if is_seed else "an integer setting"
            raise ConfigError(f"setting {where!r} = {value} is out of range for {what} ({low} .. {high})")


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Defaults of ``cls``, updated by a YAML file, updated by ``key=value`` overrides (in that order)."""
    return from_dict(cls, read_settings(path, overrides))


def dump_yaml(config: Any) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
