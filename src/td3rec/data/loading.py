"""One call from a dataset name or a file path to a preprocessed :class:`SequenceDataset`, plus its statistics."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from td3rec.data.preprocess import PreprocessConfig, preprocess
from td3rec.data.readers import read_interactions
from td3rec.data.registry import REGISTRY, get_entry, locate, unknown_name_message
from td3rec.data.sequences import SequenceDataset
from td3rec.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def is_registry_name(name_or_path: str) -> bool:
    """True when ``name_or_path`` names a registered dataset rather than an existing file.

    An existing file wins over a registry name of the same spelling; a folder (e.g. an extracted
    ``ml-1m/``) does not.
    """
    return not Path(name_or_path).is_file() and (name_or_path in REGISTRY or name_or_path.lower() in REGISTRY)


def default_preprocess_config(name_or_path: str) -> PreprocessConfig:
    """The registry's default preprocessing for a dataset name; the package default for a file."""
    if is_registry_name(name_or_path):
        return get_entry(name_or_path).default_config()
    return PreprocessConfig()


def load_dataset(
    name_or_path: str | os.PathLike,
    config: PreprocessConfig | None = None,
    data_dir: str | os.PathLike | None = None,
    fmt: str | None = None,
    columns: Mapping[str, str | int] | None = None,
    progress: bool = True,
) -> SequenceDataset:
    """Read and preprocess a registered dataset or an interaction file.

    Args:
        name_or_path: a registry name (``td3rec datasets``) or the path of an interaction file.
        config: preprocessing; default: the registry's setting for a name, :class:`PreprocessConfig` for a file.
        data_dir: dataset cache folder for registry names (default ``$TD3REC_DATA_DIR``, else ``~/.cache/td3rec``).
        fmt, columns: format and column mapping of a file (see :func:`td3rec.data.readers.read_interactions`);
            registry datasets know their own, so giving them with a name is an error.
        progress: show a progress bar while downloading.
    """
    name = os.fspath(name_or_path)
    if is_registry_name(name):
        if fmt or columns:
            raise ConfigError(f"{name!r} is a registered dataset with a known format; --format and the column "
                              "options only apply to files")
        entry = get_entry(name)
        data_file, path = locate(entry, data_dir, progress=progress)
        raw = read_interactions(path, fmt=data_file.parser.fmt, columns=dict(data_file.parser.columns),
                                member=data_file.parser.member)
        dataset = preprocess(raw, config or entry.default_config(), name=entry.name)
        dataset.preprocessing["file"] = data_file.filename
        return dataset
    path = Path(name)
    if not path.exists():
        looks_like_path = os.sep in name or "/" in name or path.suffix != ""
        if looks_like_path:
            raise DataError(f"file not found: {name}; check the path (or give a dataset name, see `td3rec datasets`)")
        raise DataError(unknown_name_message(name))
    raw = read_interactions(path, fmt=fmt, columns=columns)
    return preprocess(raw, config or PreprocessConfig(), name=name)


def dataset_stats(ds: SequenceDataset) -> dict:
    """Size, density and sequence-length distribution of a preprocessed dataset (for ``td3rec stats``).

    Returns a JSON-serialisable dict: ``name``, ``users``, ``items``, ``interactions``, ``density``
    (interactions / (users x items)) and ``sequence_length`` with ``min``, ``p25``, ``median``, ``p75``,
    ``p90``, ``max``, ``mean`` (quantiles by linear interpolation).
    """
    lengths = np.fromiter((len(s) for s in ds.sequences), dtype=np.int64, count=ds.n_users)
    if len(lengths) == 0:
        raise DataError(f"{ds.name}: the dataset has no users")
    p25, p50, p75, p90 = np.percentile(lengths, [25, 50, 75, 90])
    return {
        "name": ds.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": int(lengths.sum()),
        "density": float(lengths.sum()) / (ds.n_users * ds.n_items),
        "sequence_length": {
            "min": int(lengths.min()),
            "p25": float(p25),
            "median": float(p50),
            "p75": float(p75),
            "p90": float(p90),
            "max": int(lengths.max()),
            "mean": float(lengths.mean()),
        },
        "preprocessing": {k: ds.preprocessing[k] for k in ("k_core", "k_core_mode", "top_items")
                          if k in ds.preprocessing},
    }
