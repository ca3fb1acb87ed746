"""Readers that turn an interaction file into a raw (user, item, timestamp) table.

Supported formats (``fmt``):

- ``atomic``: RecBole atomic file (``.inter``), tab separated, header of ``name:type`` fields.
- ``sequence``: one user per line, ``user item item ...`` in chronological order (S3Rec-style ``Beauty.txt``).
- ``pairs``: one interaction per line, ``user item [timestamp]``, whitespace separated (``::`` separated
  lines, as in MovieLens ``ratings.dat``, are accepted too); no header; file order is chronological.
- ``csv`` / ``tsv``: comma / tab separated with a header row.
- ``parquet``: a Parquet table (needs pyarrow: the ``parquet`` extra, ``pip install "td3rec[parquet]"``).
- ``jsonl``: one JSON object per line (Amazon review dumps: ``reviewerID``, ``asin``, ``unixReviewTime``).

Any text format may be gzip-compressed (``.gz``); a member of a zip archive is read with ``member=``.

Columns are found by name (see :data:`DEFAULT_COLUMNS`) or given by a mapping
``{"user": ..., "item": ..., "time": ...}`` whose values are column names or 0-based column positions.
Every problem with the file raises :class:`td3rec.errors.DataError` with a one-line message that names the
file, the line or column, and what to do.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import logging
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from td3rec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: format names accepted by ``fmt=`` / ``--format``
FORMATS = ("atomic", "sequence", "pairs", "csv", "tsv", "parquet", "jsonl")

#: what to install for Parquet support (pyarrow, an optional dependency)
PARQUET_EXTRA = "td3rec[parquet]"

#: other spellings of the format names
FORMAT_ALIASES = {"inter": "atomic", "recbole": "atomic", "seq": "sequence", "txt": "sequence",
                  "pair": "pairs", "json": "jsonl", "pq": "parquet"}

#: column names tried, in order, when no mapping is given (matched exactly, then case-insensitively)
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userId", "user", "reviewerID", "UserId", "uid"),
    "item": ("item_id", "itemId", "movieId", "item", "asin", "parent_asin", "ProductId", "iid"),
    "time": ("timestamp", "time", "ts", "unixReviewTime", "Timestamp", "datetime", "date"),
}

#: keys accepted in a column mapping, with their aliases
_ROLE_ALIASES = {"user": "user", "item": "item", "time": "time", "timestamp": "time"}

_SEP_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_SNIFF_LINES = 1000


@dataclass
class RawInteractions:
    """An interaction log as read from a file, before any filtering.

    Attributes:
        users: raw user ids as strings, one per interaction.
        items: raw item ids as strings, one per interaction.
        timestamps: float64 time of each interaction, or ``None`` when the file has none (file order is
            then the chronological order).
        source: the file (and archive member) it was read from, for messages.
        fmt: the format it was read as.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None
    source: str
    fmt: str = ""

    def __post_init__(self) -> None:
        if len(self.users) != len(self.items) or (
            self.timestamps is not None and len(self.timestamps) != len(self.users)
        ):
            raise ValueError("users, items and timestamps must have the same length")

    def __len__(self) -> int:
        return len(self.users)


# ----------------------------------------------------------------------------------------------- public API


def normalize_format(fmt: str) -> str:
    """The canonical name of a format (``inter`` -> ``atomic`` ...); unknown names raise ConfigError."""
    name = fmt.strip().lower()
    name = FORMAT_ALIASES.get(name, name)
    if name not in FORMATS:
        hint = get_close_matches(name, FORMATS, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"unknown format {fmt!r}{did_you_mean}; choose one of {', '.join(FORMATS)}")
    return name


def normalize_columns(columns: Mapping[str, str | int] | None) -> dict[str, str | int]:
    """Check a column mapping: keys ``user``/``item``/``time`` (or ``timestamp``); None values are dropped."""
    result: dict[str, str | int] = {}
    for key, value in (columns or {}).items():
        role = _ROLE_ALIASES.get(str(key).lower())
        if role is None:
            raise ConfigError(f"unknown column role {key!r} in the column mapping; use user, item or time")
        if value is None or value == "":
            continue
        if isinstance(value, (int, np.integer)) and value < 0:
            raise ConfigError(f"column position for {role} must be >= 0, got {value}")
        result[role] = int(value) if isinstance(value, (int, np.integer)) else str(value)
    return result


def detect_format(path: str | os.PathLike, member: str | None = None,
                  columns: Mapping[str, str | int] | None = None) -> str:
    """Guess the format of ``path`` (or of the archive ``member``) from its extension, then its content.

    ``.inter`` -> atomic, ``.csv`` -> csv, ``.tsv`` -> tsv, ``.parquet`` -> parquet, ``.json``/``.jsonl``
    -> jsonl (a trailing ``.gz`` is ignored). Anything else is sniffed from its first lines: a
    ``name:type`` header means atomic; a JSON object means jsonl; a comma/tab-separated first line that
    holds a known column name (:data:`DEFAULT_COLUMNS`, or a name in ``columns``), or only names above a
    line with numbers, means csv/tsv; whitespace-separated ids are ``pairs`` when the first field repeats
    on several lines or every line has two fields, and ``sequence`` otherwise.
    """
    name = (member or os.fspath(path)).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".zip") and member is None:
        raise DataError(f"{path} is a zip archive; extract the interaction file from it and give that file")
    by_suffix = {".inter": "atomic", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
                 ".json": "jsonl", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    for suffix, fmt in by_suffix.items():
        if name.endswith(suffix):
            return fmt
    data = _load_bytes(path, member, limit=1 << 16)
    if data[:4] == b"PAR1":
        return "parquet"
    text = _decode(data, _describe(path, member))
    names = {str(v).lower() for v in normalize_columns(columns).values() if isinstance(v, str)}
    return _sniff_text_format(text, _describe(path, member), names)


def read_interactions(
    path: str | os.PathLike,
    fmt: str | None = None,
    columns: Mapping[str, str | int] | None = None,
    member: str | None = None,
) -> RawInteractions:
    """Read an interaction file into a :class:`RawInteractions` table.

    Args:
        path: the file (plain, ``.gz``, or a zip archive together with ``member``).
        fmt: one of :data:`FORMATS`; detected with :func:`detect_format` when omitted.
        columns: ``{"user": ..., "item": ..., "time": ...}``, names or 0-based positions; missing roles use
            :data:`DEFAULT_COLUMNS` (the timestamp is optional: without one, file order is chronological).
        member: path of the file inside a zip archive.
    """
    source = _describe(path, member)
    cols = normalize_columns(columns)
    fmt = normalize_format(fmt) if fmt else detect_format(path, member, cols)
    if fmt == "parquet":
        raw = _read_parquet(path, member, source, cols)
    else:
        data = _load_bytes(path, member)
        if fmt == "jsonl":
            raw = _read_jsonl(data, source, cols)
        else:
            text = _decode(data, source)
            readers: dict[str, Callable[[str, str, dict], RawInteractions]] = {
                "atomic": _read_atomic, "sequence": _read_sequence, "pairs": _read_pairs,
                "csv": lambda t, s, c: _read_delimited(t, s, c, ","),
                "tsv": lambda t, s, c: _read_delimited(t, s, c, "\t"),
            }
            raw = readers[fmt](text, source, cols)
    raw.fmt = fmt
    if len(raw) == 0:
        raise DataError(f"{source}: no interactions found in the file (read as {fmt}); check the file or --format")
    log.debug("read %d interactions from %s as %s", len(raw), source, fmt)
    return raw


# ------------------------------------------------------------------------------------------ bytes and text


def _describe(path: str | os.PathLike, member: str | None) -> str:
    return f"{os.fspath(path)}:{member}" if member else os.fspath(path)


def _load_bytes(path: str | os.PathLike, member: str | None = None, limit: int | None = None) -> bytes:
    """The file's bytes: decompressed when gzip, the member's bytes when a zip archive.

    With ``limit``, only (about) the first ``limit`` decompressed bytes are returned, cut at a line end:
    enough to sniff the format without reading a large file twice.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"file not found: {p}; check the path (or give a dataset name, see `td3rec datasets`)")
    if p.is_dir():
        raise DataError(f"{p} is a folder, not an interaction file; give the file inside it")
    source = _describe(p, member)
    try:
        if member is not None:
            with zipfile.ZipFile(p) as archive:
                try:
                    with archive.open(member) as handle:
                        data = handle.read(-1 if limit is None else limit)
                except KeyError:
                    raise DataError(f"{p}: archive has no member {member!r}; it may be a different release, "
                                    "delete it and download it again") from None
        else:
            with open(p, "rb") as handle:
                data = handle.read(-1 if limit is None else limit)
        if data[:2] == b"\x1f\x8b":
            if limit is None:
                data = gzip.decompress(data)
            else:  # a prefix of the stream: decompress what it holds, without checking the (absent) end
                data = zlib.decompressobj(wbits=31).decompress(data, limit)
    except zipfile.BadZipFile:
        raise DataError(f"{p} is not a valid zip archive (corrupt or incomplete); replace it (download it "
                        "again if it came from the web)") from None
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise DataError(f"{source} is not a valid gzip file (corrupt or incomplete); replace it (download it "
                        "again if it came from the web)") from None
    except PermissionError:
        raise DataError(f"cannot read {p}: permission denied") from None
    except OSError as err:
        raise DataError(f"cannot read {source}: {err.strerror or err}") from None
    if limit is not None and len(data) >= limit and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]
    return data


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text of a file; binary or undecodable content is a DataError naming the line."""
    if _looks_utf16(data):
        raise DataError(f"{source}: the file is UTF-16 text; convert it to UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`) "
                        "and give the converted file")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DataError(f"{source}: binary content (NUL byte on line {line}); this is not a text interaction "
                        "file. If it is Parquet use --format parquet; otherwise give the right file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{source}: line {line} is not valid UTF-8 text (byte 0x{data[err.start]:02x}); "
                        "convert the file to UTF-8 or give the right file") from None
    if not text.strip():
        raise DataError(f"{source}: the file is empty; give a file with interactions")
    return text


def _looks_utf16(data: bytes) -> bool:
    """A UTF-16 byte-order mark, or (without one) ASCII text with every other byte NUL."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    head = data[:512]
    if len(head) < 4:
        return False
    even, odd = head[0::2], head[1::2]
    return (odd.count(0) == len(odd) and even.count(0) == 0) or (even.count(0) == len(even) and odd.count(0) == 0)


def _data_lines(text: str, limit: int | None = None) -> list[tuple[int, str]]:
    """(1-based line number, line) of the non-blank lines, at most ``limit`` of them."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            out.append((number, line))
            if limit is not None and len(out) >= limit:
                break
    return out


class _LineMap:
    """Maps a data-row index (blank lines skipped, after ``skip`` header lines) to its 1-based line number.

    Only used to word error messages, so it is computed lazily.
    """

    def __init__(self, text: str, skip: int) -> None:
        self._text = text
        self._skip = skip
        self._numbers: list[int] | None = None

    def __call__(self, row: int) -> str:
        if self._numbers is None:
            self._numbers = [n for n, _ in _data_lines(self._text)][self._skip:]
        return f"line {self._numbers[row]}" if row < len(self._numbers) else f"data row {row + 1}"


# ---------------------------------------------------------------------------------------- format sniffing


def _looks_numeric(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _sniff_text_format(text: str, source: str, column_names: set[str] = frozenset()) -> str:
    lines = [line for _, line in _data_lines(text, _SNIFF_LINES)]
    first = lines[0].strip()
    if first.startswith("{"):
        return "jsonl"
    tab_fields = first.split("\t")
    if len(tab_fields) > 1 and all(re.fullmatch(r"[^:\s]+:[A-Za-z_]+", f.strip()) for f in tab_fields):
        return "atomic"
    known = {name.lower() for names in DEFAULT_COLUMNS.values() for name in names} | set(column_names)
    second = lines[1].strip() if len(lines) > 1 else ""
    for sep, fmt in ((",", "csv"), ("\t", "tsv")):
        fields = [f.strip().lower() for f in first.split(sep)]
        if len(fields) < 2:
            continue
        names_only = not any(_looks_numeric(f) for f in fields)
        numbers_below = any(_looks_numeric(f.strip()) for f in second.split(sep))
        if known.intersection(fields) or (names_only and numbers_below):
            return fmt
    if "," in first and not any(c.isspace() for c in first):
        return "csv"  # headerless CSV; reading it will ask for a header
    if "::" in first:
        return "pairs"
    rows = [line.split() for line in lines]
    first_fields = [r[0] for r in rows]
    widths = {len(r) for r in rows}
    if len(set(first_fields)) < len(first_fields) or widths == {2}:
        fmt = "pairs"
    else:
        fmt = "sequence"
    log.info("%s: detected format %r (pass --format to override)", source, fmt)
    return fmt


# ------------------------------------------------------------------------------------ column resolution


def _resolve(role: str, names: list[str], cols: dict, source: str, required: bool) -> int | None:
    """Position of the column for ``role`` (user/item/time) among the header ``names``."""
    flag = {"user": "--user-col", "item": "--item-col", "time": "--time-col"}[role]
    if role in cols:
        wanted = cols[role]
        if isinstance(wanted, int):
            if wanted >= len(names):
                raise DataError(f"{source}: {role} column position {wanted + 1} is out of range, the file has "
                                f"{len(names)} column(s): {_show(names)}; fix {flag}")
            return wanted
        if wanted in names:
            return names.index(wanted)
        lowered = [n.lower() for n in names]
        if wanted.lower() in lowered:
            return lowered.index(wanted.lower())
        hint = get_close_matches(wanted, names, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise DataError(f"{source}: no column named {wanted!r} for the {role}{did_you_mean}; the columns are "
                        f"{_show(names)}; fix {flag}{_separator_hint(names)}")
    for candidate in DEFAULT_COLUMNS[role]:
        if candidate in names:
            return names.index(candidate)
    lowered = [n.lower() for n in names]
    for candidate in DEFAULT_COLUMNS[role]:
        if candidate.lower() in lowered:
            return lowered.index(candidate.lower())
    if not required:
        return None
    raise DataError(f"{source}: no {role} column (looked for {', '.join(DEFAULT_COLUMNS[role])}); the columns "
                    f"are {_show(names)}; name it with {flag}{_separator_hint(names)}")


def _show(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def _separator_hint(names: list[str]) -> str:
    """When the header did not split, say which separator it seems to use."""
    if len(names) != 1:
        if all(_looks_numeric(n) for n in names):
            return "; the first line looks like data, but this format needs a header row (or use --format pairs)"
        return ""
    for sep, label in _SEP_NAMES.items():
        if sep in names[0]:
            fmt = {",": "csv", "\t": "tsv"}.get(sep)
            advice = f"use --format {fmt}" if fmt else "convert it to CSV or TSV"
            return f"; it seems {label}-separated: {advice}"
    if " " in names[0]:
        return "; it seems space-separated: use --format pairs (no header) or convert it to CSV"
    return ""


# ---------------------------------------------------------------------------------- value validation


def _tokens(values: pd.Series, role: str, source: str, where: Callable[[int], str]) -> np.ndarray:
    """Id column -> object array of non-empty strings (integral floats lose their ``.0``)."""
    flag = "--user-col" if role == "user" else "--item-col"
    if pd.api.types.is_float_dtype(values.dtype):
        present = values.dropna().to_numpy()
        # integral floats lose their ".0", but only where every value is an exactly representable integer
        # (|x| <= 2**53); huge or infinite values keep their float spelling instead of overflowing int64
        if len(present) and np.all(np.isfinite(present)) and np.all(np.abs(present) <= 2**53) \
                and np.all(np.mod(present, 1) == 0):
            values = values.astype("Int64")
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(f"{source}: {where(row)}: missing {role} id; every interaction needs one "
                        f"(check the separator, or {flag})")
    tokens = values.astype(str).str.strip()
    empty = (tokens == "").to_numpy()
    if empty.any():
        row = int(np.argmax(empty))
        raise DataError(f"{source}: {where(row)}: empty {role} id; every interaction needs one "
                        f"(check the separator, or {flag})")
    return tokens.to_numpy(dtype=object)


def _times(values: pd.Series, source: str, column: str, where: Callable[[int], str]) -> np.ndarray:
    """Timestamp column -> float64 seconds. Numbers are taken as they are; date strings are parsed."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        bad = values.isna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{source}: {where(row)}: missing timestamp in column {column!r}")
        bad = ~_in_date_range(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{source}: {where(row)}: timestamp {values.iloc[row]} in column {column!r} is outside "
                            f"the dates td3rec reads ({_DATE_RANGE[0].year}..{_DATE_RANGE[1].year - 1})")
        return _epoch_seconds(values)
    stripped = values.astype("string").str.strip() if not pd.api.types.is_numeric_dtype(values.dtype) else values
    numeric = pd.to_numeric(stripped, errors="coerce")
    bad = numeric.isna().to_numpy()
    if not bad.any():
        result = numeric.to_numpy(dtype=np.float64)
        if not np.isfinite(result).all():
            row = int(np.argmax(~np.isfinite(result)))
            raise DataError(f"{source}: {where(row)}: timestamp {values.iloc[row]!r} in column {column!r} is "
                            "not finite")
        return result
    if bad.all():
        # dates: each value must name a year (pandas would read 't1' or '00h' as year 1, and '10:00' or 'now'
        # as today) and lie in the years a time in nanoseconds holds; anything else is the one-line error below
        try:
            parsed = pd.to_datetime(stripped, errors="coerce", utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError):
            parsed = None
        if parsed is not None:
            with_year = stripped.str.contains(r"(?<!\d)\d{4}(?!\d)", regex=True).fillna(False).to_numpy(dtype=bool)
            bad = (parsed.isna().to_numpy() | ~with_year | ~_in_date_range(parsed))
            if not bad.any():
                return _epoch_seconds(parsed)
    row = int(np.argmax(bad))
    value = values.iloc[row]
    shown = "an empty value" if pd.isna(value) or str(value).strip() == "" else repr(str(value))
    raise DataError(f"{source}: {where(row)}: cannot read {shown} in column {column!r} as a timestamp "
                    "(need numbers, or dates with a 4-digit year such as 2021-03-01 10:00); fix the file or pick "
                    "another column with --time-col")


#: the dates td3rec reads: the years a time in nanoseconds since 1970 holds (with a margin)
_DATE_RANGE = (pd.Timestamp("1678-01-01", tz="UTC"), pd.Timestamp("2262-01-01", tz="UTC"))


def _in_date_range(values: pd.Series) -> np.ndarray:
    """Which datetimes lie in :data:`_DATE_RANGE` (naive ones taken as UTC; missing ones do not)."""
    if values.dt.tz is None:
        values = values.dt.tz_localize("UTC")
    low, high = (t.tz_convert(values.dt.tz) for t in _DATE_RANGE)
    try:
        return ((values >= low) & (values < high)).fillna(False).to_numpy(dtype=bool)
    except (OverflowError, ValueError):  # a resolution that cannot compare: check one by one
        return np.array([v is not pd.NaT and low <= v < high for v in values], dtype=bool)


def _epoch_seconds(values: pd.Series) -> np.ndarray:
    """Seconds since 1970-01-01 UTC of a datetime column (naive datetimes are taken as UTC)."""
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return (values - pd.Timestamp(0)).dt.total_seconds().to_numpy(dtype=np.float64)


def _frame_to_raw(df: pd.DataFrame, source: str, positions: dict[str, int | None],
                  where: Callable[[int], str]) -> RawInteractions:
    names = [str(c) for c in df.columns]
    users = _tokens(df.iloc[:, positions["user"]], "user", source, where)
    items = _tokens(df.iloc[:, positions["item"]], "item", source, where)
    times = None
    if positions.get("time") is not None:
        times = _times(df.iloc[:, positions["time"]], source, names[positions["time"]], where)
    return RawInteractions(users=users, items=items, timestamps=times, source=source)


def _pandas_error(err: Exception, source: str, fmt: str) -> DataError:
    message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    message = message.replace("Error tokenizing data. C error: ", "")
    return DataError(f"{source}: cannot parse as {fmt}: {message}; check the separator and the format "
                     "(--format)")


# ------------------------------------------------------------------------------------------------ formats


def _read_sequence(text: str, source: str, cols: dict) -> RawInteractions:
    """``user item item ...`` per line; a user on several lines gets the items appended in file order."""
    if cols:
        raise ConfigError(f"{source}: column options do not apply to one-user-per-line files (format sequence)")
    users: list[str] = []
    items: list[str] = []
    single_field_lines = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 1:
            single_field_lines += 1
            continue
        users.extend([fields[0]] * (len(fields) - 1))
        items.extend(fields[1:])
    if not items:
        hint = " (every line has a single field: is it a CSV? use --format csv)" if single_field_lines else ""
        raise DataError(f"{source}: no interactions found when read as one user per line{hint}")
    if single_field_lines:
        log.info("%s: %d line(s) list a user without items; ignored", source, single_field_lines)
    return RawInteractions(users=np.asarray(users, dtype=object), items=np.asarray(items, dtype=object),
                           timestamps=None, source=source)


def _read_pairs(text: str, source: str, cols: dict) -> RawInteractions:
    """``user item [timestamp]`` per line, whitespace (or ``::``) separated, no header."""
    for role, value in cols.items():
        if isinstance(value, str):
            raise ConfigError(f"{source}: pairs files have no header, so the {role} column must be a column "
                              f"number, not {value!r}")
    first_lines = _data_lines(text, 1)
    if "::" in first_lines[0][1]:
        text = text.replace("::", "\t")
    try:
        df = pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, dtype=str, keep_default_na=False,
                         quoting=csv.QUOTE_NONE, engine="c")
    except (pd.errors.ParserError, ValueError) as err:
        raise _pandas_error(err, source, "pairs") from None
    width = df.shape[1]
    if width < 2:
        raise DataError(f"{source}: every line has one field, pairs files need 'user item [timestamp]'; if the "
                        "file is comma separated with a header use --format csv")
    positions = {"user": cols.get("user", 0), "item": cols.get("item", 1), "time": cols.get("time")}
    if "time" not in cols:
        if width == 3:
            positions["time"] = 2
        elif width > 3:
            raise DataError(f"{source}: lines have {width} fields; say which one holds the timestamp with "
                            "--time-col N (counting from 1), or convert the file to CSV with a header")
    for role, pos in positions.items():
        if pos is not None and pos >= width:
            raise DataError(f"{source}: {role} column position {pos + 1} is out of range, lines have {width} "
                            "fields")
    where = _LineMap(text, 0)
    # whitespace-separated fields cannot be empty, so an empty (or NaN) cell means the line was short
    short = (df.isna() | (df == "")).any(axis=1).to_numpy()
    if short.any():
        raise DataError(f"{source}: {where(int(np.argmax(short)))} has fewer fields than the first line "
                        f"({width}); fix the file")
    return _frame_to_raw(df, source, positions, where)


def _read_delimited(text: str, source: str, cols: dict, sep: str) -> RawInteractions:
    """CSV/TSV with a header row."""
    fmt = "csv" if sep == "," else "tsv"
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, engine="c",
                         quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE)
    except (pd.errors.ParserError, ValueError) as err:
        raise _pandas_error(err, source, fmt) from None
    df.columns = [str(c).strip() for c in df.columns]
    names = list(df.columns)
    if len(names) == 1 and _separator_hint(names):
        raise DataError(f"{source}: the header {names[0]!r} does not split into columns when read as {fmt}"
                        f"{_separator_hint(names)}")
    positions = {role: _resolve(role, names, cols, source, required=role != "time")
                 for role in ("user", "item", "time")}
    if len(df) == 0:
        raise DataError(f"{source}: only a header row, no interactions")
    where = _LineMap(text, 1)
    return _frame_to_raw(df, source, positions, where)


def _read_atomic(text: str, source: str, cols: dict) -> RawInteractions:
    """RecBole atomic file: a tab-separated header of ``name:type`` fields, then tab-separated rows."""
    header_line = _data_lines(text, 1)[0][1]
    fields = header_line.rstrip("\r\n").split("\t")
    if not all(":" in f for f in fields):
        raise DataError(f"{source}: line 1 is not a RecBole atomic header (tab-separated name:type fields, e.g. "
                        f"'user_id:token'){_separator_hint([f.strip() for f in fields])}")
    names = [f.split(":", 1)[0].strip() for f in fields]
    positions = {role: _resolve(role, names, cols, source, required=role != "time")
                 for role in ("user", "item", "time")}
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", header=None, skiprows=1, names=names, dtype=str,
                         keep_default_na=False, quoting=csv.QUOTE_NONE, engine="c")
    except (pd.errors.ParserError, ValueError) as err:
        raise _pandas_error(err, source, "atomic") from None
    if len(df) == 0:
        raise DataError(f"{source}: only a header row, no interactions")
    return _frame_to_raw(df, source, positions, _LineMap(text, 1))


def _read_parquet(path: str | os.PathLike, member: str | None, source: str, cols: dict) -> RawInteractions:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{source}: reading Parquet needs pyarrow, which is not installed; install it with "
                        f'pip install "{PARQUET_EXTRA}"') from None
    data = _load_bytes(path, member)
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{source}: not a readable Parquet file ({str(err).splitlines()[0]}); check the file "
                        "or --format") from None
    names = [str(n) for n in table.column_names]
    positions = {role: _resolve(role, names, cols, source, required=role != "time")
                 for role in ("user", "item", "time")}
    wanted = sorted({p for p in positions.values() if p is not None})
    df = table.select(wanted).to_pandas()
    remap = {p: i for i, p in enumerate(wanted)}
    local = {role: (remap[p] if p is not None else None) for role, p in positions.items()}
    if len(df) == 0:
        raise DataError(f"{source}: the table has no rows")
    return _frame_to_raw(df, source, local, lambda row: f"row {row + 1}")


def _read_jsonl(data: bytes, source: str, cols: dict) -> RawInteractions:
    """One JSON object per line (python-literal lines, as in some Amazon dumps, are accepted too)."""
    text = _decode(data, source)
    df = _jsonl_fast(data)
    if df is None:
        df = _jsonl_slow(text, source)
    names = [str(c) for c in df.columns]
    for role, value in cols.items():
        if isinstance(value, int):
            raise ConfigError(f"{source}: JSON lines have named fields; give the {role} field by name")
    positions = {role: _resolve(role, names, cols, source, required=role != "time")
                 for role in ("user", "item", "time")}
    return _frame_to_raw(df, source, positions, _LineMap(text, 0))


#: deepest bracket nesting handed to pyarrow's JSON reader (its parser recurses in C++ and crashes the process
#: on very deep nesting); deeper content takes the line-by-line path, which reports it as one error line
_FAST_JSON_MAX_DEPTH = 64


def _bracket_depth(data: bytes, chunk: int = 1 << 24) -> int:
    """An upper bound of the bracket nesting depth of ``data`` (brackets inside strings count too)."""
    deepest = depth = 0
    for start in range(0, len(data), chunk):
        b = np.frombuffer(data, dtype=np.uint8, count=min(chunk, len(data) - start), offset=start)
        step = (b == ord("[")).astype(np.int32) + (b == ord("{")) - (b == ord("]")) - (b == ord("}"))
        running = depth + np.cumsum(step)
        if running.size:
            deepest, depth = max(deepest, int(running.max())), int(running[-1])
    return deepest


def _jsonl_fast(data: bytes) -> pd.DataFrame | None:
    """Parse with pyarrow (fast); None when the content needs the line-by-line path or pyarrow (an optional
    dependency) is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.json as pj
    except ImportError:
        return None

    if _bracket_depth(data) > _FAST_JSON_MAX_DEPTH:
        return None
    try:
        table = pj.read_json(io.BytesIO(data))
    except (pa.ArrowException, ValueError):
        return None
    keep = [n for n in table.column_names if pa.types.is_primitive(table.schema.field(n).type)
            or pa.types.is_string(table.schema.field(n).type) or pa.types.is_timestamp(table.schema.field(n).type)]
    return table.select(keep).to_pandas()


def _jsonl_slow(text: str, source: str) -> pd.DataFrame:
    records = []
    for number, line in _data_lines(text):
        try:
            obj = json.loads(line)
        except RecursionError:
            raise DataError(f"{source}: line {number} is nested too deeply to be an interaction record; fix the "
                            "file") from None
        except json.JSONDecodeError:
            try:
                obj = ast.literal_eval(line.strip())
            except (ValueError, SyntaxError, RecursionError, MemoryError):
                raise DataError(f"{source}: line {number} is not a JSON object; fix the file or --format") from None
        if not isinstance(obj, dict):
            raise DataError(f"{source}: line {number} is not a JSON object; fix the file or --format")
        records.append({k: v for k, v in obj.items() if not isinstance(v, (dict, list))})
    return pd.DataFrame.from_records(records)
