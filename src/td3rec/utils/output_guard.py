"""The output guard: the one place that decides, before anything is written, whether td3rec may write a file or
a folder. Every command and every option that writes goes through :func:`check_output` (folders are then
created by :func:`prepare_folder`), so no writer can forget a check another one has.

The rule (``docs/reliability.md``):

- a **folder** td3rec writes into (a train or distill run, a report, inspection figures, benchmark results) is one
  td3rec created: it gets a marker file (:data:`MARKER`, naming the command) before anything else. An existing,
  non-empty folder may be replaced (``--overwrite``: emptied first) or continued (``--resume``, benchmark
  results) only if it carries the marker of its kind, or is recognisably such a folder written before markers
  existed; a folder to replace must moreover hold nothing but names td3rec writes in that kind of folder.
- no output folder is, holds or lies inside one of the command's inputs (the dataset file or cache, the
  config, the teacher, the summary, the results it reports on ...).
- a **file** named by an option (``export --out``, ``--json``) is never one of the command's inputs, never lies
  inside an input folder, and never takes a name td3rec writes inside one of its own folders (``metrics.json``
  of a run, ``results.json`` of a benchmark ...). An existing file is replaced only with ``--overwrite``, or,
  for an option without one (``--json``), when it is the same command's earlier report.

Every refusal is one :class:`~td3rec.errors.ConfigError` line naming the option; nothing has been written or
deleted when it is raised. :data:`CHECKED` records what was checked (the tests use it to prove that every
writing option of the command line goes through here).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from td3rec.errors import ConfigError, OutputError

log = logging.getLogger(__name__)

#: the marker file of a folder td3rec created (its content names the command that created it)
MARKER = ".td3rec-run"
#: the advisory lock file of a folder a td3rec process writes to (:func:`td3rec.utils.run_folder.lock_folder`)
LOCK_FILE = ".td3rec.lock"

#: how an existing folder is used: emptied and written anew (``--overwrite``), or written on (``--resume``,
#: the results of a benchmark, which keeps the cells it finished)
REPLACE, CONTINUE = "replace", "continue"

#: an input of a command: (the option that names it, e.g. ``--teacher``; its path)
InputPath = tuple[str, "str | os.PathLike"]

#: (option, resolved path) of every output checked in this process, in order
CHECKED: list[tuple[str, Path]] = []


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder td3rec writes.

    Attributes:
        name: what messages call it (``output folder``, ``report folder`` ...).
        commands: the commands whose marker makes a folder of this kind (the marker's content).
        patterns: every name td3rec writes in it, as shell patterns relative to the folder (``*`` spans
            sub-folders); ``--overwrite`` refuses a folder holding anything else.
        nested: sub-folders that are whole run folders of their own (a distillation's on-the-fly teacher).
        legacy: recognises a folder of this kind written before td3rec marked its folders (or ``None``).
    """

    name: str
    commands: tuple[str, ...]
    patterns: tuple[str, ...]
    nested: tuple[str, ...] = ()
    legacy: Callable[[Path], bool] | None = None


def _old_run(folder: Path) -> bool:
    """A ``td3rec train`` or ``distill`` run folder from before markers: ``run.json`` and ``config.yaml`` with
    nothing but a run's names."""
    return ((folder / "run.json").is_file() and (folder / "config.yaml").is_file()
            and not foreign_entries(folder, RUN_FOLDER))


def _old_report(folder: Path) -> bool:
    """A report folder of ``td3rec report`` from before markers: ``report.md`` (with td3rec's title) and
    ``figures/*.png``, nothing else."""
    try:
        head = (folder / "report.md").read_text(encoding="utf-8", errors="replace")[:64]
    except OSError:
        return False
    return head.startswith("# td3rec benchmark report") and not foreign_entries(folder, REPORT_FOLDER)


def _old_figures(folder: Path) -> bool:
    """A figures folder of ``td3rec inspect`` from before markers: some of its three figures, nothing else."""
    found = False
    for entry in folder.iterdir():  # (stops at the first other name: this runs on every folder above a file)
        if entry.is_symlink() or not entry.is_file() or not _known(entry.name, FIGURES_FOLDER):
            return False
        found = found or entry.name.endswith(".png")
    return found


def _old_results(folder: Path) -> bool:
    """Benchmark results from before markers: the copy of the grid (``benchmark.yaml``) with the results table
    or the finished cells; or a folder holding nothing but a results folder's names, among them one only td3rec
    makes (``.locks``, ``.td3rec.lock``, ``benchmark.yaml``: e.g. teachers trained ahead for a grid)."""
    if (folder / "benchmark.yaml").is_file() and any(
            (folder / name).exists() for name in ("results.json", "results.csv", "cells")):
        return True
    return any((folder / name).exists() for name in (".locks", LOCK_FILE, "benchmark.yaml")) and not foreign_entries(
        folder, RESULTS_FOLDER)


#: the folder of a ``td3rec train`` or ``td3rec distill`` run (tests/test_run_folders.py checks that real runs
#: write nothing outside these names)
RUN_FOLDER = FolderKind(
    "output folder", ("train", "distill"),
    (MARKER, LOCK_FILE, "config.yaml", "run.json", "dataset.json", "metrics.json", "steps.jsonl", "best.pt",
     "resume.pt", "checkpoints", "checkpoints/epoch_*.pt", "summary_*.safetensors", "summary_*.json"),
    nested=("teacher",), legacy=_old_run)
#: the folder of ``td3rec report`` (names of td3rec.experiments.report: REPORT_FILE, FIGURES_DIR)
REPORT_FOLDER = FolderKind("report folder", ("report",),
                           (MARKER, LOCK_FILE, "report.md", "figures", "figures/*.png"), legacy=_old_report)
#: the folder of ``td3rec inspect --figures`` (names of td3rec.summary.figures.FIGURE_FILES)
FIGURES_FOLDER = FolderKind("figures folder", ("inspect",),
                            (MARKER, LOCK_FILE, "entropy_per_position.png", "popularity.png", "top_items_heatmap.png"),
                            legacy=_old_figures)
#: the results folder of ``td3rec benchmark`` (its cells, the grid, the table, the teachers and summaries it
#: trains, their claims, the default report)
RESULTS_FOLDER = FolderKind(
    "results folder", ("benchmark",),
    (MARKER, LOCK_FILE, "benchmark.yaml", "results.csv", "results.json", "cells", "cells/*", ".locks", ".locks/*",
     "teachers", "teachers/*", "summaries", "summaries/*", "report", "report/*"),
    legacy=_old_results)
#: every kind, to recognise the td3rec folder a file output would land in
KINDS = (RUN_FOLDER, REPORT_FOLDER, FIGURES_FOLDER, RESULTS_FOLDER)


# -- the one check ----------------------------------------------------------------------------------------------
def check_output(path: str | os.PathLike, option: str, inputs: Iterable[InputPath] = (),
                 kind: FolderKind | None = None, mode: str = REPLACE, overwrite: bool | None = False,
                 own_file: Callable[[Path], bool] | None = None) -> Path:
    """Decide whether ``path``, given by ``option``, may be written; returns it as a Path or raises a one-line
    :class:`ConfigError` naming ``option``. Writes nothing.

    Args:
        path: the folder (``kind`` given) or file (``kind`` None) to write.
        option: how the user named it (``--out``, ``--json``, ``--figures``, ``--results``, ``--resume``).
        inputs: ``(option, path)`` of everything the command reads (paths that do not exist are ignored).
        kind: the kind of folder; ``None`` for a file.
        mode: folders only: :data:`REPLACE` (an existing one needs ``overwrite`` and is emptied) or
            :data:`CONTINUE` (an existing one is written on as it is).
        overwrite: the command's ``--overwrite`` flag; ``None`` when it has none.
        own_file: files only: recognises the command's own earlier output, which may be replaced without
            ``--overwrite`` (``--json`` reports).
    """
    target = Path(path)
    CHECKED.append((option, _resolved(target)))
    sources = [(name, Path(source)) for name, source in inputs if source is not None and str(source) != ""]
    sources = [(name, source) for name, source in sources if source.exists()]
    if kind is None:
        _check_file(target, option, sources, overwrite, own_file)
    else:
        _check_folder(target, option, sources, kind, mode, overwrite)
    return target


def prepare_folder(path: str | os.PathLike, option: str, command: str, inputs: Iterable[InputPath] = (),
                   kind: FolderKind = RUN_FOLDER, mode: str = REPLACE, overwrite: bool = False,
                   lock: Callable[[Path], None] | None = None) -> Path:
    """Check (:func:`check_output`), create, lock (``lock``, e.g. :func:`td3rec.utils.run_folder.lock_folder`),
    check again under the lock, empty (:data:`REPLACE`) and mark the output folder ``path``; returns it.
    Every refusal is a one-line error and deletes nothing."""
    inputs = list(inputs)
    out = check_output(path, option, inputs, kind=kind, mode=mode, overwrite=overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {kind.name} {out} ({option}): {err.strerror or err}") from None
    if lock is not None:
        lock(out)
        check_output(out, option, inputs, kind=kind, mode=mode, overwrite=overwrite)  # no other td3rec now
    if mode == REPLACE:
        for entry in out.iterdir():
            if entry.name == LOCK_FILE:
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError as err:
                raise OutputError(f"cannot empty {kind.name} {out} ({entry.name}: {err.strerror or err})") from None
    if mode == REPLACE or not (out / MARKER).exists():
        from td3rec.utils.atomic import write_text

        write_text(out / MARKER, f"{command}\n")
    return out


# -- folders ----------------------------------------------------------------------------------------------------
def _check_folder(out: Path, option: str, sources: Sequence[tuple[str, Path]], kind: FolderKind, mode: str,
                  overwrite: bool | None) -> None:
    refuse_inputs(out, option, sources, folder=True)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} exists and is not a folder; give a folder")
    if not out.is_dir() or is_empty(out):
        return
    if mode == REPLACE and not overwrite:
        resume = f", --resume {out} to continue an interrupted run there," if kind is RUN_FOLDER else ""
        raise ConfigError(f"{kind.name} {out} already exists; pass --overwrite to replace it{resume} or choose "
                          f"another {option}")
    owner = folder_owner(out)
    doing = "--overwrite refuses" if mode == REPLACE else f"{option} refuses"
    if owner is None:
        raise ConfigError(f"{doing} {out}: td3rec did not create it (no {MARKER} marker), so it may hold your "
                          f"files; delete it yourself or choose another {option}")
    if owner is not kind:
        article = "an" if kind.name[0] in "aeiou" else "a"
        raise ConfigError(f"{doing} {out}: it is a td3rec {owner.name}, not {article} {kind.name}; choose another "
                          f"{option}")
    if mode == REPLACE:
        foreign = foreign_entries(out, kind)
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise ConfigError(f"--overwrite refuses {out}: it holds files td3rec did not write "
                              f"({', '.join(foreign[:3])}{more}); move them away or choose another {option}")


def folder_owner(folder: Path) -> FolderKind | None:
    """The kind of td3rec folder ``folder`` is (by its marker, else recognised as written before markers), or
    ``None`` when td3rec did not create it."""
    marker = folder / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            command = marker.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            command = ""
        return next((k for k in KINDS if command in k.commands), RUN_FOLDER)  # (an unknown command: a run)
    for kind in KINDS:
        try:
            if kind.legacy is not None and kind.legacy(folder):
                return kind
        except OSError:
            continue
    return None


def foreign_entries(folder: Path, kind: FolderKind = RUN_FOLDER, prefix: str = "") -> list[str]:
    """Entries of ``folder`` (recursively, as relative paths) that td3rec does not write in a folder of
    ``kind``: neither one of its names nor a temporary file of :mod:`td3rec.utils.atomic`."""
    from td3rec.utils.atomic import is_temporary

    found: list[str] = []
    for entry in sorted(folder.iterdir()):
        name = prefix + entry.name
        if entry.is_symlink():
            found.append(name)  # td3rec writes no links; one may point at anything of the user's
        elif entry.is_dir() and entry.name in kind.nested and not prefix:
            found += foreign_entries(entry, RUN_FOLDER, name + "/")
        elif is_temporary(entry.name):
            continue
        elif entry.is_dir():
            if _known(entry.name, kind):
                found += [f for f in foreign_entries(entry, kind, name + "/") if not _known(f[len(prefix):], kind)]
            else:
                found.append(name + "/")
        elif not _known(name[len(prefix):], kind):
            found.append(name)
    return found


def _known(relative: str, kind: FolderKind) -> bool:
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in kind.patterns)


def is_empty(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but a lock file and a marker (a run killed before writing anything)."""
    return all(entry.name in (LOCK_FILE, MARKER) for entry in folder.iterdir())


# -- files ------------------------------------------------------------------------------------------------------
def _check_file(target: Path, option: str, sources: Sequence[tuple[str, Path]], overwrite: bool | None,
                own_file: Callable[[Path], bool] | None) -> None:
    if target.is_dir():
        raise ConfigError(f"{option} {target} is a folder; give a file name")
    refuse_inputs(target, option, sources, folder=False)
    owned = _owned_name(target)
    if owned is not None:
        folder, kind, relative = owned
        raise ConfigError(f"{option} {target} would take the name of td3rec's own {relative} in the {kind.name} "
                          f"{folder}; choose another {option}")
    if not target.exists() and not target.is_symlink():
        return
    if overwrite:
        return
    if own_file is not None and not target.is_symlink():
        try:
            if own_file(target):
                return
        except (OSError, ValueError):
            pass
    if overwrite is None:
        raise ConfigError(f"{option} {target} already exists and is not this command's earlier output; choose "
                          f"another {option} or remove the file yourself")
    raise ConfigError(f"output file {target} already exists; pass --overwrite to replace it or choose another "
                      f"{option}")


def _owned_name(target: Path) -> tuple[Path, FolderKind, str] | None:
    """``(folder, kind, relative name)`` when ``target`` lies in a td3rec folder under a name td3rec writes
    there."""
    resolved = _resolved(target)
    for folder in resolved.parents:
        if not folder.is_dir():
            continue
        kind = folder_owner(folder)
        if kind is None:
            continue
        relative = resolved.relative_to(folder).as_posix()
        first, _, rest = relative.partition("/")
        if _known(relative, kind) or (first in kind.nested and rest and _known(rest, RUN_FOLDER)):
            return folder, kind, relative
    return None


# -- inputs -----------------------------------------------------------------------------------------------------
def refuse_inputs(out: Path, option: str, sources: Sequence[tuple[str, Path]], folder: bool) -> None:
    """Refuse an output that is, holds (a folder) or lies inside one of the command's inputs."""
    for name, source in sources:
        by = f" ({name} {source})" if name else f" {source}"
        if inside(source, out):
            raise ConfigError(f"{option} {out} would replace the run's own input{by}; choose another {option}")
        if source.is_dir() and inside(out, source):
            raise ConfigError(f"{option} {out} lies inside the run's own input{by}; writing there would change "
                              f"it; choose another {option}")


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved: links and ``..`` do not hide it)."""
    path, folder = _resolved(path), _resolved(folder)
    return path == folder or folder in path.parents


def _resolved(path: Path) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError):  # a link loop: compare as given
        return Path(os.path.abspath(path))
