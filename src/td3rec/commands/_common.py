"""Options shared by several sub-commands: config file, overrides, output folder, device."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import TypeVar

from td3rec.config import load_config
from td3rec.errors import ConfigError

C = TypeVar("C")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` and repeatable ``--set key=value`` overrides."""
    parser.add_argument("--config", metavar="FILE", help="YAML file with settings (see README for every key)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set eval.batch_size=512 (repeatable)")


def add_output_arguments(parser: argparse.ArgumentParser, default_hint: str) -> None:
    """``--out DIR`` and ``--overwrite``."""
    parser.add_argument("--out", metavar="DIR", help=f"output folder (default: {default_hint})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def check_output_dir(path: str | Path, overwrite: bool) -> None:
    """Fail before any work starts if the output folder exists (non-empty) without ``--overwrite``."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out} already exists; pass --overwrite to replace it, --resume {out} to "
                          "continue an interrupted run there, or choose another --out")


def prepare_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Create the output folder (emptying it first when ``overwrite`` is set); returns its path."""
    check_output_dir(path, overwrite)
    out = Path(path)
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create output folder {out}: {err.strerror}") from None
    return out


def config_from_args(cls: type[C], args: argparse.Namespace, shortcuts: dict[str, str]) -> C:
    """Defaults of ``cls`` < ``--config`` file < ``--set`` overrides < shortcut flags (``--epochs`` ...),
    validated before any work starts."""
    overrides = list(args.overrides) + shortcut_overrides(args, shortcuts)
    config = load_config(cls, args.config, overrides)
    config.validate()
    return config


def shortcut_overrides(args: argparse.Namespace, shortcuts: dict[str, str]) -> list[str]:
    """The ``key=value`` overrides that the given shortcut flags (``--epochs 5`` ...) stand for."""
    return [f"{key}={getattr(args, flag)}" for flag, key in shortcuts.items() if getattr(args, flag, None) is not None]


def default_output_dir(args: argparse.Namespace, template: str, check: bool = True, **fields: object) -> str:
    """``--out`` or ``template`` filled with the dataset's file/registry name and ``fields``; checked for
    ``--overwrite`` right away (unless ``check`` is false: the processes of a group other than process 0,
    which never write there)."""
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(args.dataset).rstrip("/").split("/")[-1])
    out = args.out or template.format(dataset=dataset, **fields)
    if check:
        check_output_dir(out, args.overwrite)
    return out
