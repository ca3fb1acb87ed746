"""What every path option of the command line is: an input the command reads, or an output it writes.

:data:`PATH_OPTIONS` is the one table of them. The commands take their inputs from it (:func:`run_inputs`: an
output may never be, hold or lie inside one) and check every output through it (:func:`guard_output`, which
calls :func:`td3rec.utils.output_guard.check_output`). ``tests/test_output_guard.py`` reads the parsers: an
option that names a file or folder and is missing here fails it, and every output listed here is run against a
folder of the user's, the command's own input and the folder above that input.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from td3rec.utils import output_guard
from td3rec.utils.output_guard import (
    CONTINUE,
    FIGURES_FOLDER,
    REPLACE,
    REPORT_FOLDER,
    RESULTS_FOLDER,
    RUN_FOLDER,
    FolderKind,
)


@dataclass(frozen=True)
class Input:
    """An option naming something the command reads.

    Attributes:
        flag: the option as the user writes it (``--teacher``), or the positional's name (``SUMMARY``).
        reads: the paths actually read behind the given one (``report RESULTS`` reads ``RESULTS/results.json``,
            so its default ``RESULTS/report`` is no input); default: the path itself.
    """

    flag: str
    reads: Callable[[Path], list[Path]] | None = None


@dataclass(frozen=True)
class Output:
    """An option naming something the command writes: a folder of ``kind`` (used in ``mode``) or, with
    ``kind`` None, a file."""

    flag: str
    kind: FolderKind | None = None
    mode: str = REPLACE


@dataclass(frozen=True)
class NotAPath:
    """An option whose help mentions files but whose value is no path (``--sequences-format``)."""

    flag: str


def _results_file(path: Path) -> list[Path]:
    return [path / "results.json" if path.is_dir() else path]


#: the options of a dataset file's reading (values, not paths)
_READING = {"data_format": NotAPath("--format"), "user_col": NotAPath("--user-col"),
            "item_col": NotAPath("--item-col"), "time_col": NotAPath("--time-col")}
_DATA = {"dataset": Input("--dataset"), "data_dir": Input("--data-dir"), **_READING}
_RUN = {"config": Input("--config"), "out": Output("--out", RUN_FOLDER),
        "resume": Output("--resume", RUN_FOLDER, CONTINUE)}

#: command -> argparse destination -> what the option is (every option that names a file or folder)
PATH_OPTIONS: dict[str, dict[str, Input | Output | NotAPath]] = {
    "datasets": {"data_dir": Input("--data-dir")},
    "stats": {"dataset": Input("DATASET_OR_FILE"), "data_dir": Input("--data-dir"), **_READING},
    "train": {**_DATA, **_RUN},
    "distill": {**_DATA, **_RUN, "teacher": Input("--teacher")},
    "evaluate": {**_DATA, "config": Input("--config"), "summary": Input("--summary"),
                 "sequences": Input("--sequences"), "sequences_format": NotAPath("--sequences-format"),
                 "teacher": Input("--teacher"), "json": Output("--json")},
    "export": {"summary": Input("SUMMARY"), "export_format": NotAPath("--format"), "out": Output("--out")},
    "inspect": {"summary": Input("SUMMARY"), **_DATA, "figures": Output("--figures", FIGURES_FOLDER)},
    "proxy": {"config": Input("CONFIG.yaml"), **_DATA, "summary": Input("--summary"), "teacher": Input("--teacher"),
              "full_from": Input("--full-from"), "json": Output("--json")},
    "benchmark": {"config": Input("CONFIG.yaml"), "data_dir": Input("--data-dir"),
                  "results": Output("--results", RESULTS_FOLDER, CONTINUE)},
    "report": {"results": Input("RESULTS", _results_file), "out": Output("--out", REPORT_FOLDER)},
}


def run_inputs(args: argparse.Namespace, command: str | None = None) -> list[tuple[str, str]]:
    """``(option, path)`` of everything ``args``' command reads (:data:`PATH_OPTIONS`), the dataset cache
    included when the dataset is a registered name: an output may never be, hold or lie inside one of them."""
    found: list[tuple[str, str]] = []
    for dest, role in PATH_OPTIONS.get(command or args.command, {}).items():
        if not isinstance(role, Input):
            continue
        value = getattr(args, dest, None)
        for item in value if isinstance(value, (list, tuple)) else [value] if value else []:
            paths = role.reads(Path(item)) if role.reads is not None else [Path(item)]
            found += [(role.flag, str(p)) for p in paths]
    dataset = getattr(args, "dataset", None)
    if "data_dir" in PATH_OPTIONS.get(command or args.command, {}) and not getattr(args, "data_dir", None) and (
            dataset and not Path(dataset).exists()):
        from td3rec.data.registry import cache_dir

        found.append(("the dataset cache", str(cache_dir(None))))
    return found


def guard_output(args: argparse.Namespace, dest: str, path: str | Path | None = None,
                 own_file: Callable[[Path], bool] | None = None) -> Path:
    """Check the output option ``dest`` of ``args``' command (:func:`td3rec.utils.output_guard.check_output`)
    against the command's inputs, before anything is written; ``path`` replaces the option's value (a default
    filled in). Returns the path."""
    role = PATH_OPTIONS[args.command][dest]
    if not isinstance(role, Output):
        raise TypeError(f"{args.command} {dest} is not an output option")
    target = path if path is not None else getattr(args, dest)
    return output_guard.check_output(target, role.flag, _inputs_for(args, dest), kind=role.kind, mode=role.mode,
                                     overwrite=getattr(args, "overwrite", None), own_file=own_file)


def prepare_output(args: argparse.Namespace, dest: str, path: str | Path | None = None,
                   lock: Callable[[Path], None] | None = None) -> Path:
    """Check, create, lock (``lock``), check again, empty (an output replaced with ``--overwrite``) and mark
    the output folder of option ``dest`` (:func:`td3rec.utils.output_guard.prepare_folder`)."""
    role = PATH_OPTIONS[args.command][dest]
    if not isinstance(role, Output) or role.kind is None:
        raise TypeError(f"{args.command} {dest} is not an output folder")
    target = path if path is not None else getattr(args, dest)
    return output_guard.prepare_folder(target, role.flag, args.command, _inputs_for(args, dest), kind=role.kind,
                                       mode=role.mode, overwrite=bool(getattr(args, "overwrite", False)), lock=lock)


def _inputs_for(args: argparse.Namespace, dest: str) -> list[tuple[str, str]]:
    """The inputs an output ``dest`` is checked against (a ``--resume`` folder is an output, not an input: it
    is the run itself)."""
    return run_inputs(args)
