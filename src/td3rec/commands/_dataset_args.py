"""Dataset options shared by the sub-commands that load a dataset (``stats``, ``train``, ...)."""

from __future__ import annotations

import argparse
import dataclasses

from td3rec.data.loading import default_preprocess_config, load_dataset
from td3rec.data.preprocess import K_CORE_MODES
from td3rec.data.readers import FORMATS
from td3rec.data.sequences import SequenceDataset
from td3rec.errors import ConfigError


def add_dataset_arguments(parser: argparse.ArgumentParser, positional: bool, required: bool = True,
                          what: str | None = None) -> None:
    """Add the dataset (positional ``dataset`` or ``--dataset``, required unless ``required=False``) and its
    reading/preprocessing options; ``what`` replaces the dataset option's help text."""
    what = what or "registered dataset name (see `td3rec datasets`) or path of an interaction file"
    if positional:
        parser.add_argument("dataset", metavar="DATASET_OR_FILE", help=what)
    else:
        parser.add_argument("--dataset", required=required, metavar="NAME_OR_FILE", help=what)
    group = parser.add_argument_group("dataset options")
    group.add_argument("--data-dir", metavar="DIR",
                       help="dataset cache folder (default: $TD3REC_DATA_DIR, else ~/.cache/td3rec)")
    group.add_argument("--format", dest="data_format", metavar="FORMAT",
                       help=f"file format: {', '.join(FORMATS)} (default: detected from the name and content)")
    for role in ("user", "item", "time"):
        group.add_argument(f"--{role}-col", dest=f"{role}_col", metavar="COLUMN",
                           help=f"{role} column of a file: a header name, or a column number counting from 1")
    group.add_argument("--k-core", type=int, metavar="K",
                       help="keep users and items with at least K interactions; 0 = off "
                            "(default: the dataset's setting, 5)")
    group.add_argument("--k-core-mode", choices=K_CORE_MODES,
                       help="iterative (until stable) or single-pass (count once, as the TD3 reference did "
                            "on ml-100k) (default: the dataset's setting)")
    group.add_argument("--top-items", type=int, metavar="K",
                       help="keep only the K most frequent items before the k-core filter, e.g. to cut a large "
                            "catalogue to a size where the exact settings are affordable (default 0: every item)")


def require_dataset(args: argparse.Namespace) -> None:
    """``--dataset`` is required unless the command resumes a run (which knows its dataset)."""
    if getattr(args, "dataset", None) is None:
        raise ConfigError("the following argument is required: --dataset (or --resume RUN_DIR to continue a run)")


def column_mapping(args: argparse.Namespace) -> dict[str, str | int]:
    """``--user-col/--item-col/--time-col`` as a column mapping (numbers become 0-based positions)."""
    columns: dict[str, str | int] = {}
    for role in ("user", "item", "time"):
        value = getattr(args, f"{role}_col", None)
        if value is None or value == "":
            continue
        if value.isdigit():
            if int(value) < 1:
                raise ConfigError(f"--{role}-col {value}: column numbers count from 1")
            columns[role] = int(value) - 1
        else:
            columns[role] = value
    return columns


def dataset_from_args(args: argparse.Namespace) -> SequenceDataset:
    """Load and preprocess the dataset the options describe (registry defaults, then option overrides)."""
    config = default_preprocess_config(args.dataset)
    overrides = {}
    if getattr(args, "k_core", None) is not None:
        overrides["k_core"] = args.k_core
    if getattr(args, "k_core_mode", None) is not None:
        overrides["k_core_mode"] = args.k_core_mode
    if getattr(args, "top_items", None) is not None:
        overrides["top_items"] = args.top_items
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return load_dataset(args.dataset, config=config, data_dir=args.data_dir,
                        fmt=args.data_format, columns=column_mapping(args) or None)
