"""Saving and loading summaries: one safetensors file whose header carries the JSON metadata, plus a
human-readable JSON copy of that metadata next to it.

The metadata records the method, factor shapes, the config that produced it, the dataset fingerprint, the
item id map and the td3rec version; loading against a dataset checks the fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from td3rec import __version__
from td3rec.errors import DataError
from td3rec.summary.validation import check_summary_content
from td3rec.utils.atomic import write_bytes, write_json

METADATA_KEY = "td3rec"


def save_summary(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and ``metadata`` (``td3rec_version`` is added) to ``path``."""
    path = Path(path)
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise ValueError(f"refusing to save a summary with non-finite values in {name}")
    meta = dict(metadata, td3rec_version=__version__)
    # serialised in memory, then written by Python: a full disk is an OSError (-> OutputError), not a
    # library-specific exception, and the file appears atomically
    data = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                             metadata={METADATA_KEY: json.dumps(meta)})
    write_bytes(path, data)
    write_json(path.with_suffix(".json"), meta)


def load_summary(path: str | Path, expected_fingerprint: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a summary, its content checked (:func:`~td3rec.summary.validation.check_summary_content`); with
    ``expected_fingerprint`` refuse one distilled from other data."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"summary {path} does not exist")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        meta = json.loads(header[METADATA_KEY])
    except (SafetensorError, OSError, KeyError, ValueError, RecursionError) as err:
        raise DataError(f"summary {path} cannot be read ({type(err).__name__}); it is corrupted or not a td3rec summary") from None
    check_summary_content(tensors, meta, f"summary {path}")
    if expected_fingerprint is not None and meta.get("dataset_fingerprint") != expected_fingerprint:
        raise DataError(
            f"summary {path} was distilled from dataset {meta.get('dataset', '?')!r} with a different fingerprint "
            f"than the data given here; use the same dataset file and preprocessing it was distilled with"
        )
    return tensors, meta
