"""Options shared by several sub-commands: config file, overrides, output folder, device."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TypeVar

from td3rec.config import load_config, read_settings
from td3rec.commands import _outputs
from td3rec.utils import run_folder

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


def run_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(option, path)`` of the files and folders a command reads (dataset file, dataset cache, config file,
    teacher, summary, sequences ...; :data:`td3rec.commands._outputs.PATH_OPTIONS`): an output folder or file
    may never be, hold or lie inside one of them."""
    return _outputs.run_inputs(args)


def prepare_output_dir(path: str | Path, args: argparse.Namespace) -> Path:
    """Create the run folder of ``args`` (emptying a td3rec one first with ``--overwrite``), locked for this
    run and marked as td3rec's, through the output guard (:func:`td3rec.commands._outputs.prepare_output`)."""
    return _outputs.prepare_output(args, "out", path, lock=lambda out: run_folder.lock_folder(out, "output folder"))


def config_from_args(cls: type[C], args: argparse.Namespace, shortcuts: dict[str, str]) -> C:
    """Defaults of ``cls`` < ``--config`` file < ``--set`` overrides < shortcut flags (``--epochs`` ...),
    validated before any work starts."""
    overrides = list(args.overrides) + shortcut_overrides(args, shortcuts)
    config = load_config(cls, args.config, overrides)
    config.validate()
    return config


def explicit_settings(args: argparse.Namespace, shortcuts: dict[str, str]) -> dict:
    """The settings the user gave (config file, ``--set``, shortcut flags) as a nested mapping: what data-dependent
    defaults must leave alone."""
    return read_settings(args.config, list(args.overrides) + shortcut_overrides(args, shortcuts))


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
        _outputs.guard_output(args, "out", out)
    return out
