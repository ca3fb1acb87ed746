"""Output folders td3rec owns: a marker file, an advisory lock, and the rules of ``--overwrite``.

Nothing a user owns is ever deleted:

- every output folder td3rec creates gets a marker file (:data:`MARKER`) before anything else is written
  into it; ``--overwrite`` empties only a folder that carries the marker, that holds nothing but names td3rec
  writes (:data:`OUTPUT_PATTERNS`), and that holds none of the run's own inputs (the dataset file, the
  teacher, the summary ...). Anything else is refused with one line, before any work starts;
- a folder a run writes to is locked (``fcntl.flock`` on :data:`LOCK_FILE` inside it) for as long as the run
  lasts, so a second writer (another ``--overwrite`` run, a ``--resume`` of the same run, a second
  ``td3rec benchmark`` on the same results) is refused with one line. The kernel releases the lock when its
  process dies, so the lock of a killed run is never in the way; the lock file stays (it is td3rec's) and
  the folder is never deleted while held, so every process locks the same file.

Locks are released when the command ends (:func:`release_locks`, called by :func:`td3rec.cli.main`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from td3rec.errors import ConfigError, OutputError
from td3rec.utils.atomic import is_temporary, write_text

log = logging.getLogger(__name__)

#: the marker file of a folder td3rec created (its content names the command that created it)
MARKER = ".td3rec-run"
#: the advisory lock file of a folder a td3rec process writes to
LOCK_FILE = ".td3rec.lock"
#: every name (relative path, shell pattern) a ``td3rec train`` or ``td3rec distill`` run writes in its folder;
#: ``--overwrite`` refuses a folder that holds anything else. tests/test_run_folders.py checks that real runs
#: write nothing outside it.
OUTPUT_PATTERNS = (
    MARKER, LOCK_FILE, "config.yaml", "run.json", "dataset.json", "metrics.json", "steps.jsonl", "best.pt",
    "resume.pt", "checkpoints", "checkpoints/epoch_*.pt", "summary_*.safetensors", "summary_*.json",
)
#: sub-folders that are whole td3rec run folders of their own (the on-the-fly teacher of a distillation)
NESTED_RUNS = ("teacher",)

#: held locks: resolved folder -> open file descriptor of its lock file
_HELD: dict[Path, int] = {}


# -- ownership ---------------------------------------------------------------------------------------
def foreign_entries(folder: Path, prefix: str = "") -> list[str]:
    """Entries of ``folder`` (recursively, as relative paths) that td3rec does not write: neither in
    :data:`OUTPUT_PATTERNS` nor a temporary file of :mod:`td3rec.utils.atomic`."""
    found: list[str] = []
    for entry in sorted(folder.iterdir()):
        name = prefix + entry.name
        if entry.is_symlink():
            found.append(name)  # td3rec writes no links; one may point at anything of the user's
        elif entry.is_dir() and entry.name in NESTED_RUNS and not prefix:
            found += foreign_entries(entry, name + "/")
        elif is_temporary(entry.name):
            continue
        elif entry.is_dir():
            if any(fnmatch.fnmatchcase(entry.name, p) for p in OUTPUT_PATTERNS):
                found += [f for f in foreign_entries(entry, name + "/") if not _known(f, prefix)]
            else:
                found.append(name + "/")
        elif not _known(name, prefix):
            found.append(name)
    return found


def _known(name: str, prefix: str) -> bool:
    relative = name[len(prefix):]
    return any(fnmatch.fnmatchcase(relative, p) for p in OUTPUT_PATTERNS)


def _is_empty(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but a lock file and marker (a run killed before writing anything)."""
    return all(entry.name in (LOCK_FILE, MARKER) for entry in folder.iterdir())


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved: links and ``..`` do not hide it)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def refuse_inputs(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "output") -> None:
    """Refuse an output path that is or holds one of the run's ``inputs``: replacing it would destroy what
    the run reads."""
    out = Path(out)
    for item in inputs:
        if item is None or str(item) == "":
            continue
        source = Path(item)
        if not source.exists():
            continue
        if _inside(source, out):
            raise ConfigError(f"{what} {out} would replace the run's own input {source}; choose another "
                              f"{'--out' if what != 'results folder' else '--results'}")


def check_output_dir(path: str | os.PathLike, overwrite: bool,
                     inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Fail before any work if the output folder cannot be used: a file, a non-empty folder without
    ``overwrite``, or (with it) a folder td3rec did not create, that holds other files, or that holds the
    run's own ``inputs``. Non-destructive; :func:`prepare_output_dir` repeats it under the folder's lock."""
    out = Path(path)
    refuse_inputs(out, inputs)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder")
    if not out.is_dir() or _is_empty(out):
        return
    if not overwrite:
        raise ConfigError(f"output folder {out} already exists; pass --overwrite to replace it, --resume {out} to "
                          "continue an interrupted run there, or choose another --out")
    if not (out / MARKER).is_file():
        raise ConfigError(f"--overwrite refuses {out}: td3rec did not create it (no {MARKER} marker), so it may "
                          "hold your files; delete it yourself or choose another --out")
    foreign = foreign_entries(out)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise ConfigError(f"--overwrite refuses {out}: it holds files td3rec did not write ({', '.join(foreign[:3])}"
                          f"{more}); move them away or choose another --out")


def prepare_output_dir(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike | None] = (),
                       command: str = "td3rec") -> Path:
    """Create (or, with ``overwrite``, empty) the output folder, lock it for this process and mark it as
    td3rec's; returns its path. Every refusal is a one-line :class:`ConfigError` and deletes nothing."""
    inputs = list(inputs)
    out = Path(path)
    check_output_dir(out, overwrite, inputs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create output folder {out}: {err.strerror}") from None
    lock_folder(out, "output folder")
    check_output_dir(out, overwrite, inputs)  # again, now that no other td3rec process can change it
    for entry in out.iterdir():
        if entry.name == LOCK_FILE:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as err:
            raise OutputError(f"cannot empty output folder {out} ({entry.name}: {err.strerror or err})") from None
    write_text(out / MARKER, f"{command}\n")
    return out


# -- locks -------------------------------------------------------------------------------------------
def lock_folder(folder: str | os.PathLike, what: str = "folder", shared: bool = False,
                when_alone: Callable[[], object] | None = None) -> None:
    """Take this process's advisory lock on ``folder`` (kept until :func:`release_locks`); a folder locked by
    another live process is a one-line :class:`ConfigError`. Taking a lock this process holds is a no-op.

    ``shared``: several processes may hold the folder together (``td3rec benchmark`` processes sharing one
    results folder; each claims the cells it computes, :func:`claim`); one exclusive holder still refuses
    them. ``when_alone`` runs while no other process holds the folder (e.g. removing a killed writer's
    temporary files, which a live writer may still own), before the lock is shared."""
    import fcntl

    folder = Path(folder)
    key = folder.resolve()
    if key in _HELD:
        return
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputError(f"cannot lock {what} {folder}: {err.strerror or err}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except OSError:
        alone = False
        try:
            if not shared:
                raise OSError
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(f"{what} {folder} is in use by another td3rec process{holder}; wait for it to "
                              "finish or choose another folder") from None
    if alone and when_alone is not None:
        when_alone()
    if alone and shared:
        fcntl.flock(fd, fcntl.LOCK_SH)  # (a conversion: the folder was never free in between)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is only for the message of a refused process
    _HELD[key] = fd
    log.debug("locked %s", folder)


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def release_locks() -> None:
    """Release every folder lock this process holds (at the end of a command)."""
    while _HELD:
        _, fd = _HELD.popitem()
        try:
            os.close(fd)  # closing the only descriptor releases the flock
        except OSError:
            pass


@contextmanager
def claim(path: str | os.PathLike) -> Iterator[bool]:
    """A non-blocking exclusive lock on the file ``path`` (created if missing) for the ``with`` block: yields
    whether this process holds it (false: another live process does). For work that several processes share
    (a benchmark's cells, teachers and summaries); the kernel drops the lock of a killed process."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
