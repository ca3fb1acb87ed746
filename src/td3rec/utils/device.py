"""Device selection for ``--device auto|cpu|cuda``."""

from __future__ import annotations

import torch

from td3rec.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name``: ``auto`` picks CUDA when present, else CPU."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"--device {name}: unknown device; use auto, cpu or cuda")
