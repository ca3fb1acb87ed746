"""Learner checkpoints: enough to rebuild the model and to check which data it was trained on."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from td3rec.errors import DataError, UserError
from td3rec.models.base import SequentialRecommender
from td3rec.models.registry import build_model
from td3rec.utils.atomic import write_bytes


def save_checkpoint(path: str | Path, model: SequentialRecommender, model_name: str, **meta: Any) -> None:
    """Atomically save ``model`` with its architecture, config and extra metadata (epoch, fingerprint, ...)."""
    payload = {
        "model": model_name,
        "model_config": dataclasses.asdict(model.config),
        "n_items": model.n_items,
        "max_len": model.max_len,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    buffer = io.BytesIO()  # serialised in memory so that a full disk is an OSError of the atomic write
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[SequentialRecommender, dict]:
    """Rebuild the learner saved at ``path``; returns ``(model, meta)``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupted or foreign file
        raise DataError(f"checkpoint {path} cannot be read ({type(err).__name__}); it is corrupted or not a td3rec checkpoint") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "model" not in payload:
        raise DataError(f"checkpoint {path} is not a td3rec learner checkpoint")
    try:
        model = build_model(payload["model"], payload["n_items"], payload["max_len"], **payload["model_config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, UserError) as err:
        raise DataError(f"checkpoint {path} does not match a td3rec learner ({type(err).__name__}); it is corrupted "
                        "or from an incompatible version") from None
    return model.to(device), dict(payload.get("meta", {}), model=payload["model"])


def trajectory(run_dir: str | Path) -> list[Path]:
    """Per-epoch checkpoints of a ``td3rec train`` run, in epoch order."""
    return sorted((Path(run_dir) / "checkpoints").glob("epoch_*.pt"))
