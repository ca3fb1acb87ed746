"""The resumable checkpoint of a long run (``resume.pt`` in the run folder).

One file per run, replaced atomically every ``checkpoint_every`` steps and at every epoch end, so a kill at
any moment leaves the previous checkpoint or the new one. It holds plain tensors, lists, dicts and numbers
only, and is read with ``torch.load(weights_only=True)``: loading a checkpoint never runs pickled code. It
is removed when the run finishes (``metrics.json`` then says ``"status": "finished"``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from td3rec.errors import DataError
from td3rec.utils.atomic import write_bytes

#: name of the resumable checkpoint inside a run folder
RESUME_FILE = "resume.pt"
#: layout version of the checkpoint; a different version is refused with a clear message
FORMAT_VERSION = 1
_MAGIC = "td3rec-resume"


def save_run_state(path: str | Path, kind: str, state: dict[str, Any]) -> None:
    """Atomically write the checkpoint of a ``kind`` run (``train`` or ``distill``)."""
    buffer = io.BytesIO()  # serialised in memory: a full disk is then an OSError of the atomic write
    torch.save({"format": _MAGIC, "version": FORMAT_VERSION, "kind": kind, "state": state}, buffer)
    write_bytes(path, buffer.getvalue())


def load_run_state(path: str | Path, kind: str) -> dict[str, Any]:
    """Read the checkpoint of a ``kind`` run; a missing, corrupted or foreign file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"resume checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupted or not a torch file at all
        raise DataError(f"resume checkpoint {path} cannot be read ({type(err).__name__}); it is corrupted: delete it "
                        "to restart the run from the beginning, or start a new run") from None
    if not isinstance(payload, dict) or payload.get("format") != _MAGIC or not isinstance(payload.get("state"), dict):
        raise DataError(f"{path} is not a td3rec resume checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise DataError(f"resume checkpoint {path} has layout version {payload.get('version')}, this td3rec reads "
                        f"version {FORMAT_VERSION}; resume it with the td3rec version that wrote it")
    if payload.get("kind") != kind:
        raise DataError(f"resume checkpoint {path} belongs to a `td3rec {payload.get('kind')}` run, "
                        f"not `td3rec {kind}`")
    return payload["state"]
