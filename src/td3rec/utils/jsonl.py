"""JSON-lines logs (``steps.jsonl``): appended one whole line per record, read back tolerating a torn tail.

An append is one ``write`` of a complete line followed by a flush, so a crash can at worst cut the *last*
line short (a kill between the bytes of one write, or a power loss). Readers therefore skip an unreadable
final line (with a warning) instead of failing; an unreadable line anywhere else is real corruption and is
reported. When a run resumes, the log is rewritten atomically to the records its checkpoint knows about
(:func:`rewrite_jsonl`), which also removes any torn tail.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from td3rec.errors import DataError
from td3rec.utils.atomic import output_error, write_text

log = logging.getLogger(__name__)


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line (one write, then flush to the OS)."""
    target = Path(path)
    line = json.dumps(record) + "\n"
    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
    except OSError as err:
        raise output_error(target, err) from None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn (unparsable) last line is skipped with a warning."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as err:
        raise DataError(f"cannot read {target}: {err.strerror or err}") from None
    lines = text.split("\n")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to be a record
            is_last = all(not rest.strip() for rest in lines[number:])
            if is_last:
                log.warning("%s: line %d is incomplete (the run was interrupted while writing it); ignored",
                            target, number)
                break
            raise DataError(f"{target}: line {number} is not a JSON object; the log is corrupted") from None
        records.append(record)
    return records


def rewrite_jsonl(path: str | os.PathLike, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Atomically rewrite ``path`` with only the records ``keep`` accepts (a torn tail is dropped);
    returns how many records remain."""
    records = [r for r in read_jsonl(path) if keep(r)]
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return len(records)

