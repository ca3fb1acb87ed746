"""``--resume RUN_DIR`` for ``td3rec train`` and ``td3rec distill``.

A run folder records how it was started: ``config.yaml`` (every setting) and ``run.json`` (the dataset
options, and the teacher of a distillation, with paths made absolute). Resuming takes both from the folder,
so ``td3rec distill --resume runs/td3`` is enough; options given together with ``--resume`` must agree with
what the run recorded (a different value is an error, so a resumed run can never silently mix settings).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

from td3rec.commands._common import shortcut_overrides
from td3rec.commands._outputs import guard_output
from td3rec.utils.output_guard import CONTINUE, RUN_FOLDER, check_output
from td3rec.config import load_config, parse_override, to_dict
from td3rec.errors import ConfigError
from td3rec.utils.atomic import remove_temporaries, write_json
from td3rec.utils.run_folder import lock_folder

C = TypeVar("C")

#: the file that records a run's dataset options
RUN_FILE = "run.json"
#: the dataset options (argparse destinations) a run records
DATASET_OPTIONS = ("dataset", "data_dir", "data_format", "user_col", "item_col", "time_col", "k_core", "k_core_mode",
                   "top_items")

_MISSING = object()


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    """``--resume RUN_DIR``."""
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint, with the run's own settings and "
                             "data (options given with it must not differ); excludes --overwrite")


def record_run(out: Path, args: argparse.Namespace, extra: tuple[str, ...] = ()) -> None:
    """Write ``run.json``: the command and its dataset options (and ``extra`` ones), paths made absolute."""
    options = {name: _normalise(name, getattr(args, name, None)) for name in DATASET_OPTIONS + extra}
    write_json(out / RUN_FILE, {"command": args.command, "options": options})


def resume_settings(cls: type[C], args: argparse.Namespace, shortcuts: dict[str, str],
                    extra: tuple[str, ...] = ()) -> tuple[C, Path]:
    """The validated config of the run in ``args.resume``; its recorded dataset (and ``extra``) options are
    put back into ``args``. Options that contradict the run are a ConfigError listing each of them."""
    if args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: --resume continues the run in RUN_DIR, "
                          "--overwrite deletes a folder to start a new run")
    run = Path(args.resume)
    check_run(args, run, inputs=False)  # a td3rec run folder (again below, with the run's inputs)
    if not run.is_dir():
        raise ConfigError(f"--resume {run}: no such run folder")
    if args.out is not None and Path(args.out).resolve() != run.resolve():
        raise ConfigError(f"--resume {run} continues in that folder; drop --out {args.out}")
    record = _read_json(run / RUN_FILE)
    if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
        raise ConfigError(f"--resume {run}: not a resumable td3rec run folder (no readable {RUN_FILE})")
    if record.get("command") != args.command:
        raise ConfigError(f"--resume {run}: it is a `td3rec {record.get('command')}` run, not `td3rec {args.command}`")
    metrics = _read_json(run / "metrics.json")
    if isinstance(metrics, dict) and metrics.get("status") == "finished":
        raise ConfigError(f"--resume {run}: the run already finished; nothing to resume")
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"--resume {run}: the run has no config.yaml; it cannot be resumed, start a new run")
    config = load_config(cls, run / "config.yaml")
    conflicts = _setting_conflicts(cls, config, args, shortcuts)
    for name in DATASET_OPTIONS + extra:
        recorded = record["options"].get(name)
        given = getattr(args, name, None)
        if given is not None and _normalise(name, given) != recorded:
            conflicts.append(f"--{name.replace('_', '-')} (run: {recorded!r}, given: {given!r})")
        setattr(args, name, recorded)
    if conflicts:
        raise ConfigError(f"--resume {run}: options differ from the run's: {'; '.join(conflicts)}; drop them to "
                          "continue the run as it was started, or start a new run")
    config.validate()
    check_run(args, run)
    return config, run


def check_run(args: argparse.Namespace, run: Path, inputs: bool = True) -> None:
    """The run folder of ``--resume`` through the output guard: a td3rec run folder that (``inputs``: once the
    run's own dataset and teacher are known) is not and does not lie inside one of the run's inputs
    (:func:`td3rec.commands._outputs.guard_output`)."""
    if inputs:
        guard_output(args, "resume", run)
    else:  # (options given with --resume are compared with the run's below, with a message naming them)
        check_output(run, "--resume", kind=RUN_FOLDER, mode=CONTINUE)


def claim_run(run: Path) -> None:
    """Take the run folder for this process before it continues there: lock it (a second writer is refused)
    and remove the temporary files a killed writer left (:func:`td3rec.utils.atomic.remove_temporaries`)."""
    lock_folder(run, "run folder")
    remove_temporaries(run)


def _setting_conflicts(cls: type[C], saved: C, args: argparse.Namespace, shortcuts: dict[str, str]) -> list[str]:
    """Settings given with ``--config``/``--set``/shortcut flags whose value differs from the saved config."""
    overrides = list(args.overrides) + shortcut_overrides(args, shortcuts)
    paths: list[tuple[str, ...]] = []
    if args.config:
        try:
            loaded = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            loaded = {}  # load_config below reports the problem
        paths += _leaves(loaded) if isinstance(loaded, dict) else []
    for text in overrides:
        keys, value = parse_override(text)
        paths += [tuple(keys) + p for p in _leaves(value)] if isinstance(value, dict) else [tuple(keys)]
    if not paths:
        return []
    given = to_dict(load_config(cls, args.config, overrides))
    saved_dict = to_dict(saved)
    conflicts = []
    for path in dict.fromkeys(paths):
        old, new = _lookup(saved_dict, path), _lookup(given, path)
        if old != new:
            conflicts.append(f"{'.'.join(path)} (run: {_show(old)}, given: {_show(new)})")
    return conflicts


def _leaves(tree: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in tree.items():
        path = prefix + (str(key),)
        out += _leaves(value, path) if isinstance(value, dict) and value else [path]
    return out


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return _MISSING
        tree = tree[key]
    return tree


def _show(value: Any) -> str:
    return "unset" if value is _MISSING else repr(value)


def _normalise(name: str, value: Any) -> Any:
    """Paths become absolute, so a resume from another working folder finds the same files."""
    if value is None:
        return None
    if name == "teacher" and isinstance(value, (list, tuple)):  # (repeated: one per architecture)
        return [str(Path(v).resolve()) for v in value]
    if name in ("data_dir", "teacher"):
        return str(Path(value).resolve())
    if name == "dataset" and Path(value).is_file():
        return str(Path(value).resolve())
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
