"""Run folders td3rec owns: the marker file, an advisory lock, and the rules of ``--overwrite``.

Nothing a user owns is ever deleted. The rules are those of every output td3rec writes and live in one place,
:mod:`td3rec.utils.output_guard`; this module holds the run folder's shorthands for them and the locks:

- every output folder td3rec creates gets a marker file (:data:`MARKER`) before anything else is written
  into it; ``--overwrite`` empties only a folder that carries the marker, that holds nothing but names td3rec
  writes (:data:`OUTPUT_PATTERNS`), and that is, holds or lies inside none of the run's own inputs (the dataset
  file, the teacher, the summary ...). Anything else is refused with one line, before any work starts;
- a folder a run writes to is locked (``fcntl.flock`` on :data:`LOCK_FILE` inside it) for as long as the run
  lasts, so a second writer (another ``--overwrite`` run, a ``--resume`` of the same run, a second
  ``td3rec benchmark`` on the same results) is refused with one line. The kernel releases the lock when its
  process dies, so the lock of a killed run is never in the way; the lock file stays (it is td3rec's) and
  the folder is never deleted while held, so every process locks the same file.

Locks are released when the command ends (:func:`release_locks`, called by :func:`td3rec.cli.main`).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from td3rec.errors import ConfigError, OutputError
from td3rec.utils import output_guard
from td3rec.utils.output_guard import LOCK_FILE, MARKER, REPLACE, RUN_FOLDER

log = logging.getLogger(__name__)

#: every name (relative path, shell pattern) a ``td3rec train`` or ``td3rec distill`` run writes in its folder;
#: ``--overwrite`` refuses a folder that holds anything else. tests/test_run_folders.py checks that real runs
#: write nothing outside it.
OUTPUT_PATTERNS = RUN_FOLDER.patterns
#: sub-folders that are whole td3rec run folders of their own (the on-the-fly teacher of a distillation)
NESTED_RUNS = RUN_FOLDER.nested

#: held locks: resolved folder -> open file descriptor of its lock file
_HELD: dict[Path, int] = {}


# -- ownership: the rules live in td3rec.utils.output_guard; these are the run folder's shorthands ------------
def foreign_entries(folder: Path, prefix: str = "") -> list[str]:
    """Entries of ``folder`` (recursively, as relative paths) that td3rec does not write in a run folder:
    neither in :data:`OUTPUT_PATTERNS` nor a temporary file of :mod:`td3rec.utils.atomic`."""
    return output_guard.foreign_entries(folder, RUN_FOLDER, prefix)


def _inputs(inputs: Iterable[str | os.PathLike | None]) -> list[tuple[str, str | os.PathLike | None]]:
    """Plain input paths as the guard's ``(option, path)`` pairs (the option unknown here)."""
    return [item if isinstance(item, tuple) else ("", item) for item in inputs]


def refuse_inputs(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "output",
                  option: str = "--out") -> None:
    """Refuse an output path that is, holds or lies inside one of the run's ``inputs``: replacing it would
    destroy what the run reads (:func:`td3rec.utils.output_guard.check_output`'s rule for inputs)."""
    sources = [(name, Path(p)) for name, p in _inputs(inputs) if p is not None and str(p) != "" and Path(p).exists()]
    output_guard.refuse_inputs(Path(out), option, sources, folder=Path(out).is_dir())


def check_output_dir(path: str | os.PathLike, overwrite: bool,
                     inputs: Iterable[str | os.PathLike | None] = (), option: str = "--out") -> None:
    """Fail before any work if the run folder cannot be used (:func:`td3rec.utils.output_guard.check_output`):
    a file, a non-empty folder without ``overwrite``, or (with it) a folder td3rec did not create, that holds
    other files, or that is, holds or lies inside one of the run's own ``inputs``. Non-destructive;
    :func:`prepare_output_dir` repeats it under the folder's lock."""
    output_guard.check_output(path, option, _inputs(inputs), kind=RUN_FOLDER, mode=REPLACE, overwrite=overwrite)


def prepare_output_dir(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike | None] = (),
                       command: str = "td3rec", option: str = "--out") -> Path:
    """Create (or, with ``overwrite``, empty) the run folder, lock it for this process and mark it as
    td3rec's; returns its path (:func:`td3rec.utils.output_guard.prepare_folder`). Every refusal is a one-line
    :class:`ConfigError` and deletes nothing."""
    return output_guard.prepare_folder(path, option, command, _inputs(inputs), kind=RUN_FOLDER, mode=REPLACE,
                                       overwrite=overwrite, lock=lambda out: lock_folder(out, "output folder"))


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
