"""Readers: every format round-trips to the same sequences; detection; column mappings; bad input."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from td3rec.data.preprocess import PreprocessConfig, preprocess
from td3rec.data.readers import detect_format, read_interactions
from td3rec.errors import ConfigError, DataError

NO_FILTER = PreprocessConfig(k_core=0)


def _random_log(seed: int, n: int = 400) -> pd.DataFrame:
    """Interactions with string-ish ids, integer timestamps with many ties, in an arbitrary row order."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 25, n)
    items = rng.integers(0, 40, n)
    times = rng.integers(1_000, 1_030, n)  # few distinct values: many ties inside a user
    return pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i:02d}" for i in items],
                         "timestamp": times})


def _expected_sequences(df: pd.DataFrame) -> dict[str, list[str]]:
    """Pure-Python reference: per user, items by timestamp, ties in row order; users with < 3 dropped."""
    per_user: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for row, (u, i, t) in enumerate(zip(df.user_id, df.item_id, df.timestamp)):
        per_user[u].append((t, row, i))
    return {u: [i for _, _, i in sorted(v)] for u, v in per_user.items() if len(v) >= 3}


def _as_token_sequences(ds) -> dict[str, list[str]]:
    return {str(u): [str(ds.item_tokens[j - 1]) for j in seq] for u, seq in zip(ds.user_tokens, ds.sequences)}


def _write_all_formats(df: pd.DataFrame, folder: Path) -> dict[str, tuple[Path, dict]]:
    """The same log in every supported format; value = (path, read kwargs)."""
    files: dict[str, tuple[Path, dict]] = {}
    atomic = folder / "log.inter"
    with open(atomic, "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u, i, t in zip(df.user_id, df.item_id, df.timestamp):
            f.write(f"{u}\t{i}\t4.0\t{t}\n")
    files["atomic"] = (atomic, {})
    df.to_csv(folder / "log.csv", index=False)
    files["csv"] = (folder / "log.csv", {})
    df.to_csv(folder / "log.tsv", index=False, sep="\t")
    files["tsv"] = (folder / "log.tsv", {})
    with gzip.open(folder / "log.csv.gz", "wt") as f:
        df.to_csv(f, index=False)
    files["csv.gz"] = (folder / "log.csv.gz", {})
    df.to_parquet(folder / "log.parquet", index=False)
    files["parquet"] = (folder / "log.parquet", {})
    pairs = folder / "pairs.txt"
    pairs.write_text("".join(f"{u} {i} {t}\n" for u, i, t in zip(df.user_id, df.item_id, df.timestamp)))
    files["pairs"] = (pairs, {"fmt": "pairs"})
    movielens = folder / "ratings.dat"
    movielens.write_text("".join(f"{u}::{i}::3::{t}\n" for u, i, t in zip(df.user_id, df.item_id, df.timestamp)))
    files["pairs-dat"] = (movielens, {"fmt": "pairs", "columns": {"time": 3}})
    renamed = df.rename(columns={"user_id": "reviewerID", "item_id": "asin", "timestamp": "unixReviewTime"})
    with gzip.open(folder / "reviews.json.gz", "wt") as f:
        for rec in renamed.to_dict("records"):
            f.write(json.dumps({**rec, "helpful": [0, 1], "reviewText": "ok"}) + "\n")
    files["jsonl.gz"] = (folder / "reviews.json.gz", {})
    custom = df.rename(columns={"user_id": "who", "item_id": "what", "timestamp": "when"})
    custom.to_csv(folder / "custom.csv", index=False)
    files["csv-mapped"] = (folder / "custom.csv", {"columns": {"user": "who", "item": "what", "time": "when"}})
    with zipfile.ZipFile(folder / "archive.zip", "w") as archive:
        archive.write(atomic, "inner/log.inter")
    files["zip-member"] = (folder / "archive.zip", {"member": "inner/log.inter"})
    # one user per line: no timestamps, so the file must already be chronological
    expected = _expected_sequences(df)
    seq = folder / "seq.txt"
    seq.write_text("".join(f"{u} {' '.join(items)}\n" for u, items in expected.items()))
    files["sequence"] = (seq, {})
    return files


@pytest.mark.parametrize("seed", [0, 1])
def test_every_format_round_trips_to_the_same_sequences(tmp_path: Path, seed: int) -> None:
    df = _random_log(seed)
    expected = _expected_sequences(df)
    files = _write_all_formats(df, tmp_path)
    fingerprints = set()
    for label, (path, kwargs) in files.items():
        ds = preprocess(read_interactions(path, **kwargs), NO_FILTER)
        assert _as_token_sequences(ds) == expected, label
        fingerprints.add(ds.fingerprint())
    assert len(fingerprints) == 1  # same ids, same order, whatever the format


def test_row_order_does_not_change_ids_but_timestamps_decide_the_order(tmp_path: Path) -> None:
    df = _random_log(3)
    df["timestamp"] = np.arange(len(df)) * 10  # distinct times: any row order gives the same data
    df.to_csv(tmp_path / "a.csv", index=False)
    df.sample(frac=1, random_state=0).to_csv(tmp_path / "b.csv", index=False)
    a = preprocess(read_interactions(tmp_path / "a.csv"), NO_FILTER)
    b = preprocess(read_interactions(tmp_path / "b.csv"), NO_FILTER)
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("a.txt", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n", "atomic"),
        ("a.txt", "user,item,ts\n1,2,3\n", "csv"),
        ("a.dat", "user\titem\tts\n1\t2\t3\n", "tsv"),
        ("a.txt", "1 5 6 7\n2 8 9\n3 5\n", "sequence"),
        ("a.txt", "1 5 100\n1 6 101\n2 5 102\n", "pairs"),
        ("a.txt", "1 5\n2 6\n3 5\n", "pairs"),
        ("a.txt", "1::5::3::100\n1::6::3::101\n", "pairs"),
        ("a.txt", "userA\titemB\nuserA\titemC\n", "pairs"),
        ("a.txt", "who\twhat\twhen\nu1\ti1\t5\n", "tsv"),
        ("a.txt", "who,what\nu1,i1\n", "csv"),
        ("a.txt", '{"user": "1", "item": "2"}\n', "jsonl"),
        ("a.inter", "whatever", "atomic"),
        ("a.csv", "whatever", "csv"),
        ("a.tsv", "whatever", "tsv"),
        ("a.jsonl", "whatever", "jsonl"),
        ("a.csv.gz", "whatever", "csv"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert detect_format(path) == expected


def test_detect_format_sniffs_parquet_and_gzip_content(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": ["1"], "item_id": ["2"]}).to_parquet(tmp_path / "table.bin")
    assert detect_format(tmp_path / "table.bin") == "parquet"
    with gzip.open(tmp_path / "seq.gz", "wt") as f:
        f.write("1 2 3 4\n2 3 4\n")
    assert detect_format(tmp_path / "seq.gz") == "sequence"


def test_sequence_file_keeps_file_order_and_has_no_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    path.write_text("7 30 10 20 10\n\n3 1 2 3\n")
    raw = read_interactions(path)
    assert raw.timestamps is None
    assert list(raw.users) == ["7"] * 4 + ["3"] * 3
    ds = preprocess(raw, NO_FILTER)
    assert _as_token_sequences(ds) == {"3": ["1", "2", "3"], "7": ["30", "10", "20", "10"]}


def test_pairs_without_timestamp_use_file_order(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("a z\nb y\na x\na w\nb v\nb u\n")
    raw = read_interactions(path, fmt="pairs")
    assert raw.timestamps is None
    assert _as_token_sequences(preprocess(raw, NO_FILTER)) == {"a": ["z", "x", "w"], "b": ["y", "v", "u"]}


def test_dates_are_parsed_as_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("user,item,time\nu,late,2021-03-01 10:00\nu,early,2020-12-31\nu,mid,2021-01-15T08:30:00\n")
    raw = read_interactions(path)
    assert raw.timestamps[1] < raw.timestamps[2] < raw.timestamps[0]
    assert raw.timestamps[1] == pd.Timestamp("2020-12-31", tz="UTC").timestamp()
    assert _as_token_sequences(preprocess(raw, NO_FILTER)) == {"u": ["early", "mid", "late"]}


def test_parquet_datetime_columns_become_utc_seconds(tmp_path: Path) -> None:
    times = pd.to_datetime(["2021-01-02 01:00", "2020-01-01 00:00", "2021-01-01 00:00"]).tz_localize("Europe/Paris")
    pd.DataFrame({"user_id": [1, 1, 1], "item_id": ["a", "b", "c"], "time": times}).to_parquet(tmp_path / "t.parquet")
    raw = read_interactions(tmp_path / "t.parquet")
    assert raw.timestamps.tolist() == [t.timestamp() for t in times]
    assert raw.timestamps[0] == pd.Timestamp("2021-01-02 00:00", tz="UTC").timestamp()


def test_column_positions_and_case_insensitive_names(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("RATING,USERID,ITEMID,TS\n5,u1,i1,3\n5,u1,i2,1\n5,u1,i3,2\n")
    by_default = read_interactions(path)  # userId/itemId/ts matched case-insensitively
    assert list(by_default.items) == ["i1", "i2", "i3"] and list(by_default.timestamps) == [3, 1, 2]
    by_position = read_interactions(path, columns={"user": 1, "item": 2, "timestamp": 0})
    assert list(by_position.timestamps) == [5, 5, 5]


def test_integral_float_ids_in_parquet_become_integer_tokens(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": [1.0, 1.0, 1.0], "item_id": [10, 11, 12]}).to_parquet(tmp_path / "f.parquet")
    raw = read_interactions(tmp_path / "f.parquet")
    assert list(raw.users) == ["1", "1", "1"] and list(raw.items) == ["10", "11", "12"]


# ----------------------------------------------------------------------------------------------- bad input


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


BAD_INPUTS = [
    # (file name, content, read kwargs, fragments the message must contain)
    ("empty.csv", "", {}, ["empty.csv", "empty"]),
    ("blank.txt", "\n  \n\n", {}, ["blank.txt", "empty"]),
    ("header.csv", "user_id,item_id,timestamp\n", {}, ["header.csv", "only a header"]),
    ("nouser.csv", "person,item_id\n1,2\n", {}, ["nouser.csv", "no user column", "'person'", "--user-col"]),
    ("typo.csv", "user_id,item_id,stamp\n1,2,3\n", {"columns": {"time": "stamps"}},
     ["typo.csv", "'stamps'", "did you mean 'stamp'", "--time-col"]),
    ("wrongsep.csv", "user_id,item_id,timestamp\n1,2,3\n", {"fmt": "tsv"},
     ["wrongsep.csv", "does not split", "comma-separated: use --format csv"]),
    ("wrongsep.tsv", "user_id;item_id\n1;2\n", {"fmt": "csv"}, ["wrongsep.tsv", "semicolon"]),
    ("noheader.csv", "1,2,3\n4,5,6\n", {}, ["noheader.csv", "looks like data", "header"]),
    ("badtime.csv", "user_id,item_id,timestamp\n1,2,3\n1,3,4\n1,4,yesterday-ish\n", {},
     ["badtime.csv", "line 4", "'yesterday-ish'", "'timestamp'"]),
    ("emptytime.csv", "user_id,item_id,timestamp\n1,2,3\n\n1,3,\n", {}, ["emptytime.csv", "line 4", "empty value"]),
    ("emptyid.csv", "user_id,item_id\n1,2\n,3\n", {}, ["emptyid.csv", "line 3", "empty user id"]),
    ("badtime.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t1.5\n1\t3\tnan?\n", {},
     ["badtime.inter", "line 3", "'nan?'"]),
    ("notatomic.inter", "user_id,item_id\n1,2\n", {}, ["notatomic.inter", "RecBole atomic header", "comma"]),
    ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, ["binary.txt", "binary", "NUL"]),
    ("latin1.txt", "1 2 3\n4 caf\xe9 5\n".encode("latin-1"), {}, ["latin1.txt", "line 2", "UTF-8"]),
    ("ragged.txt", "1 2 3\n1 3 4\n1 5\n", {"fmt": "pairs"}, ["ragged.txt", "line 3", "fewer fields"]),
    ("wide.txt", "1 2 3 4\n1 3 4 5\n", {"fmt": "pairs"}, ["wide.txt", "4 fields", "--time-col"]),
    ("toowide.txt", "1 2 3\n1 3 4 9\n", {"fmt": "pairs"}, ["toowide.txt", "line 2", "separator"]),
    ("commas.txt", "user_id,item_id\n1,2\n", {"fmt": "sequence"}, ["commas.txt", "--format csv"]),
    ("bad.parquet", b"PAR1 this is not parquet", {}, ["bad.parquet", "Parquet"]),
    ("bad.json", '{"user_id": 1, "item_id": 2}\n{"user_id": 1, "item_id"\n', {}, ["bad.json", "line 2", "JSON"]),
    ("missing.json", '{"user_id": 1, "item_id": 2}\n{"item_id": 3}\n', {},
     ["missing.json", "line 2", "missing user id"]),
    ("bad.csv.gz", b"\x1f\x8b\x08\x00garbage", {}, ["bad.csv.gz", "gzip"]),
    ("bad.zip", b"PK\x03\x04garbage", {"member": "u.data"}, ["bad.zip", "zip"]),
]


@pytest.mark.parametrize("name, content, kwargs, fragments", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_one_line_data_error(tmp_path: Path, name, content, kwargs, fragments) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        preprocess(read_interactions(path, **kwargs), NO_FILTER)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found: .*nope.csv"):
        read_interactions(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a folder"):
        read_interactions(tmp_path)


def test_missing_archive_member(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("x/u.data", "1\t2\t3\t4\n")
    with pytest.raises(DataError, match="no member 'x/ratings.dat'"):
        read_interactions(tmp_path / "a.zip", fmt="pairs", member="x/ratings.dat")
    with pytest.raises(DataError, match="zip archive; extract"):
        read_interactions(tmp_path / "a.zip")


def test_unknown_format_and_bad_mapping_are_config_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(ConfigError, match="did you mean 'parquet'"):
        read_interactions(path, fmt="parquett")
    with pytest.raises(ConfigError, match="unknown column role 'rating'"):
        read_interactions(path, columns={"rating": "x"})
    with pytest.raises(ConfigError, match="column number"):
        read_interactions(_write(tmp_path / "p.txt", "1 2\n1 3\n"), fmt="pairs", columns={"user": "uid"})


# -- pyarrow is optional (the `parquet` extra) --------------------------------------------------------------
def _hide_pyarrow_from_td3rec(monkeypatch) -> None:
    """td3rec's own imports of pyarrow (and its modules) fail, as on an install without the ``parquet`` extra.

    Only td3rec's imports: pandas, already imported here with pyarrow, keeps working as it would on an install
    where pyarrow is absent from the start.
    """
    import builtins

    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        ours = (globals or {}).get("__name__", "").startswith("td3rec")
        if ours and (name == "pyarrow" or name.startswith("pyarrow.")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.fixture
def without_pyarrow(monkeypatch):
    _hide_pyarrow_from_td3rec(monkeypatch)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path, without_pyarrow) -> None:
    path = _write(tmp_path / "log.parquet", b"PAR1" + b"\0" * 20 + b"PAR1")  # written without pyarrow either
    with pytest.raises(DataError) as info:
        read_interactions(path)
    message = str(info.value)
    assert "\n" not in message and "log.parquet" in message and 'pip install "td3rec[parquet]"' in message


def test_parquet_without_pyarrow_is_one_line_and_exit_2(tmp_path: Path, without_pyarrow, capsys) -> None:
    from td3rec.cli import main

    path = _write(tmp_path / "log.parquet", b"PAR1" + b"\0" * 20 + b"PAR1")
    assert main(["stats", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "td3rec[parquet]"' in err[0]


def test_json_lines_read_the_same_without_pyarrow(tmp_path: Path, monkeypatch) -> None:
    df = _random_log(4)
    path, kwargs = _write_all_formats(df, tmp_path)["jsonl.gz"]
    with_arrow = preprocess(read_interactions(path, **kwargs), NO_FILTER)
    _hide_pyarrow_from_td3rec(monkeypatch)
    without_arrow = preprocess(read_interactions(path, **kwargs), NO_FILTER)
    assert _as_token_sequences(without_arrow) == _as_token_sequences(with_arrow) == _expected_sequences(df)
    assert without_arrow.fingerprint() == with_arrow.fingerprint()


def test_pyarrow_is_an_extra_not_a_dependency() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("pyarrow") for dep in project["dependencies"])
    assert any(dep.startswith("pyarrow") for dep in project["optional-dependencies"]["parquet"])
    assert any(dep.startswith("pyarrow") for dep in project["optional-dependencies"]["test"])  # parquet tests run
