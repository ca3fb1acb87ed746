"""Atomic file writes: a crash leaves either the old file or the new one, never half of one.

Every file td3rec writes goes through :func:`atomic_path`: the content is written to a temporary name in the
same folder, flushed to disk (``fsync``), given the permissions a plain ``open()`` would have given it, and
renamed onto the target (``os.replace``, atomic on POSIX and Windows); the folder entry is then synced too.
A failure at any point (an exception, a full disk, a read-only folder) removes the temporary file and leaves
the previous version of the target untouched; disk and permission problems become one
:class:`~td3rec.errors.OutputError` that names the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from td3rec.errors import OutputError

log = logging.getLogger(__name__)

#: the name of a temporary file of :func:`atomic_path`: ``.NAME.XXXXXXXX[SUFFIX].tmp`` (mkstemp's 8 characters)
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}[^/]*\.tmp$")

#: errno values that mean "the disk or the permissions refuse the write", with advice for the message
_ADVICE = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some space (disk quota exceeded)",
    errno.EROFS: "choose an output folder on a writable file system",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
}


def output_error(target: Path, err: OSError) -> OutputError:
    """A one-line :class:`OutputError` for the failed write of ``target``."""
    reason = err.strerror or str(err) or type(err).__name__
    advice = _ADVICE.get(err.errno or -1, "check the output folder")
    error = OutputError(f"cannot write {target}: {reason}; {advice} (the previous version of the file, if any, "
                        "is unchanged)")
    error.reason = reason  # type: ignore[attr-defined]
    error.errno = err.errno  # type: ignore[attr-defined]
    return error


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``.

    Write the file at the yielded path (with any library); if the block raises, the temporary file is
    removed and ``path`` is untouched. An ``OSError`` (of the block or of the rename) is re-raised as
    :class:`OutputError`; other exceptions pass through unchanged.
    """
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode(target))
        os.replace(tmp, target)
        tmp = None
        _sync_folder(target.parent)
    except OSError as err:
        raise output_error(target, err) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def is_temporary(name: str) -> bool:
    """Whether the file name ``name`` is one of :func:`atomic_path`'s temporary files."""
    return bool(_TEMPORARY.match(name))


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Remove the temporary files a killed writer left in ``folder`` and its sub-folders; returns how many.

    Only call it while holding the folder's lock (:func:`td3rec.utils.run_folder.lock_folder`): a temporary
    file of a live writer must not be removed."""
    removed = 0
    for root, _, files in os.walk(folder):
        for name in files:
            if is_temporary(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, name))
                    removed += 1
    if removed:
        log.info("removed %d temporary file(s) left in %s by an interrupted write", removed, folder)
    return removed


def _file_mode(target: Path) -> int:
    """The mode of the existing target, else what ``open()`` would create (0o666 minus the umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def _sync_folder(folder: Path) -> None:
    """Flush the folder entry of a renamed file to disk (best effort: not every platform allows it)."""
    if os.name != "posix":  # pragma: no cover
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    """Make numpy scalars/arrays and paths JSON-serialisable."""
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
