"""Downloading a dataset file into the cache: progress bar, checksum check, atomic move.

A file that fails its checksum never reaches the cache (it is written to a temporary name next to the
target and only renamed onto it after verification). Network failures become one
:class:`td3rec.errors.DataError` that says which file to place in which folder by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from td3rec.errors import DataError, OutputError
from td3rec.utils.atomic import atomic_path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "td3rec (dataset download)"


class DownloadFailed(DataError):
    """The network could not deliver the file (no connection, timeout, HTTP error)."""


class CacheNotWritable(DataError):
    """The downloaded file cannot be written into the cache folder."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, expected: str | None, algorithm: str = "sha256") -> bool:
    """True when ``path`` matches ``expected``; False when no checksum is known; DataError on a mismatch."""
    if expected is None:
        return False
    actual = file_digest(path, algorithm)
    if actual.lower() != expected.lower():
        raise DataError(f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}; the file "
                        "is corrupt or a different version: delete or replace it")
    return True


def download(url: str, target: str | os.PathLike, checksum: str | None = None, algorithm: str = "sha256",
             progress: bool = True, timeout: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``target`` (atomically), verifying ``checksum`` when one is known.

    Without a known checksum the file is kept but a warning gives its sha256 so it can be recorded.
    Raises :class:`DownloadFailed` on network errors, :class:`CacheNotWritable` when the file cannot be
    written, and :class:`DataError` on a checksum mismatch; in every failure case ``target`` is left untouched.
    """
    target = Path(target)
    digests = {"sha256": hashlib.sha256()}
    if algorithm != "sha256":
        digests[algorithm] = hashlib.new(algorithm)
    try:
        with atomic_path(target) as tmp:
            _fetch(url, tmp, digests, progress, timeout)
            actual = digests[algorithm].hexdigest()
            if checksum is not None and actual.lower() != checksum.lower():
                raise DataError(f"checksum mismatch for {url}: expected {algorithm} {checksum}, got {actual}; "
                                "the download is corrupt or the file changed upstream: try again, or place a "
                                f"verified copy at {target}")
    except (OSError, OutputError) as err:  # network errors were turned into DownloadFailed: this is the disk
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise CacheNotWritable(f"cannot write {target}: {reason}; set TD3REC_DATA_DIR (or --data-dir) to "
                        "a writable folder with enough space") from None
    if checksum is None:
        log.warning("%s is unverified (no published checksum is known); its sha256 is %s", target,
                    digests["sha256"].hexdigest())
    else:
        log.info("downloaded %s (%s verified)", target, algorithm)
    return target


def _fetch(url: str, tmp: Path, digests: dict, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``tmp`` while hashing; network problems become DownloadFailed."""
    try:
        with urlopen(Request(url, headers={"User-Agent": USER_AGENT}), timeout=timeout) as response:
            total = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            with open(tmp, "wb") as out, tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                                              unit_divisor=1024, desc=Path(url).name,
                                              disable=None if progress else True,
                                              leave=False) as bar:
                while True:
                    chunk = _read_chunk(response)
                    if not chunk:
                        break
                    out.write(chunk)
                    for digest in digests.values():
                        digest.update(chunk)
                    bar.update(len(chunk))
    except (URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadFailed(f"cannot download {url}: {reason}") from None


def _read_chunk(response) -> bytes:
    try:
        return response.read(CHUNK_BYTES)
    except OSError as err:  # a connection dropped mid-way is a network failure, not a disk failure
        raise ConnectionError(str(err)) from None
