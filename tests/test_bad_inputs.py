"""Bad input sweep (issue 6, point 6): readers and commands fed malformed or degenerate inputs either load
them with documented semantics or stop with one clear line (exit code 2); fuzzed readers never raise
anything but a DataError.

Complements ``test_data_readers.py`` (reader messages) and ``test_cli_data.py`` (``stats`` messages).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from td3rec.cli import main
from td3rec.data.preprocess import PreprocessConfig, preprocess
from td3rec.data.readers import FORMATS, read_interactions
from td3rec.data.sequences import SequenceDataset
from td3rec.errors import DataError

from pipeline_support import TRAIN_TINY

NO_FILTER = PreprocessConfig(k_core=0)


def load(path: Path, **kwargs) -> SequenceDataset:
    return preprocess(read_interactions(path, **kwargs), NO_FILTER)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


# -- files that cannot be read: one line naming the file and what to do ------------------------------------

CSV = "user_id,item_id,timestamp\n1,10,1\n1,11,2\n1,12,3\n2,10,4\n2,12,5\n2,13,6\n"
BAD = [
    ("utf16.txt", "1 2 3 4\n2 3 4 5\n".encode("utf-16"), {}, ["utf16.txt", "UTF-16", "convert it to UTF-8"]),
    ("utf16le.csv", CSV.encode("utf-16-le"), {}, ["utf16le.csv", "UTF-16"]),
    ("mixed.csv", "user_id,item_id,timestamp\n1,2,3\n1;3;4\n", {}, ["mixed.csv", "line 3", "separator"]),
    ("cut.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t3", {}, ["cut.inter", "line 3"]),
    ("cut.csv.gz", gzip.compress(CSV.encode())[:-12], {}, ["cut.csv.gz", "not a valid gzip file"]),
    ("cut.parquet", _parquet(pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4]}))[:-30], {},
     ["cut.parquet", "Parquet"]),
    ("cut.jsonl", b'{"user_id": 1, "item_id": 2}\n{"user_id": 1, "ite', {}, ["cut.jsonl", "line 2"]),
    ("inf.csv", "user_id,item_id,timestamp\n1,2,inf\n", {}, ["inf.csv", "not finite"]),
    ("onelong.csv", "user_id,item_id\n1,2\n2,3\n3,4\n", {}, ["onelong.csv", "no user has 3 or more interactions"]),
]


@pytest.mark.parametrize("name, content, kwargs, fragments", BAD, ids=[b[0] for b in BAD])
def test_unreadable_inputs_are_one_line_data_errors(tmp_path, name, content, kwargs, fragments):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as info:
        load(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# -- odd but valid data: loaded, with the documented semantics -------------------------------------------------

def test_duplicate_rows_are_kept_as_repeated_interactions(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("user_id,item_id,timestamp\n1,5,1\n1,5,1\n1,6,2\n1,5,3\n")
    ds = load(path)
    assert ds.n_interactions == 4 and [list(s) for s in ds.sequences] == [[1, 1, 2, 1]]


def test_negative_and_huge_ids_are_tokens(tmp_path):
    path = tmp_path / "ids.txt"
    huge = "123456789012345678901234567890"
    path.write_text(f"-3 -1 7 {huge}\n5 {huge} -1 7\n")
    ds = load(path, fmt="sequence")
    assert sorted(ds.user_tokens.tolist()) == ["-3", "5"]
    assert set(ds.item_tokens.tolist()) == {"-1", "7", huge}
    assert ds.n_items == 3 and ds.n_interactions == 6


def test_huge_float_ids_do_not_overflow(tmp_path):
    """Found by fuzzing: integral float ids beyond int64 used to raise a TypeError."""
    path = tmp_path / "floats.jsonl"
    rows = [{"user_id": 3.0e124, "item_id": 1.0}, {"user_id": 3.0e124, "item_id": 2.0},
            {"user_id": 3.0e124, "item_id": 3.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load(path)
    assert ds.item_tokens.tolist() == ["1", "2", "3"] and ds.user_tokens.tolist() == ["3e+124"]


def test_timestamps_out_of_order_are_sorted_and_equal_ones_keep_file_order(tmp_path):
    path = tmp_path / "time.csv"
    path.write_text("user_id,item_id,timestamp\n1,a,30\n1,b,10\n1,c,20\n1,d,20\n1,e,20\n")
    ds = load(path)
    by_token = dict(zip(range(1, ds.n_items + 1), ds.item_tokens))
    assert [by_token[i] for i in ds.sequences[0]] == ["b", "c", "d", "e", "a"]


def test_single_user_and_single_item_datasets_load(tmp_path):
    one_user = tmp_path / "one_user.txt"
    one_user.write_text("u1 1 2 3 4 5\n")
    assert load(one_user).n_users == 1
    one_item = tmp_path / "one_item.txt"
    one_item.write_text("u1 7 7 7\nu2 7 7 7 7\n")
    ds = load(one_item)
    assert ds.n_items == 1 and ds.n_users == 2


def test_users_with_one_interaction_are_dropped(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("1 1\n2 2\n3 1 2 3\n")
    ds = load(path, fmt="sequence")
    assert ds.n_users == 1 and ds.preprocessing["dropped_short_users"] == 2


# -- commands on degenerate data: exit code 2 and one line ------------------------------------------------------

def _error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"td3rec {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_train_without_any_training_example(tmp_path, capsys):
    """Users with exactly 3 interactions leave one training item each: nothing to learn from."""
    path = tmp_path / "three.txt"
    path.write_text("1 1 2 3\n2 2 3 4\n3 3 4 5\n")
    assert main(["train", "--dataset", str(path), "--out", str(tmp_path / "t"), *TRAIN_TINY]) == 2
    assert "no training examples" in _error_line(capsys, "train")


def test_train_with_too_few_items_for_sampled_evaluation(tmp_path, capsys):
    path = tmp_path / "small.txt"
    path.write_text("1 1 2 3 4\n2 2 3 4 5\n")
    assert main(["train", "--dataset", str(path), "--k-core", "0", "--out", str(tmp_path / "t"), "--no-progress"]) == 2
    assert "sampled evaluation with 100 negatives is impossible" in _error_line(capsys, "train")


def test_stats_on_a_utf16_file(tmp_path, capsys):
    path = tmp_path / "export.csv"
    path.write_bytes(CSV.encode("utf-16"))
    assert main(["stats", str(path)]) == 2
    assert "UTF-16" in _error_line(capsys, "stats")


def test_evaluate_refuses_corrupted_and_foreign_files(toy_data, toy_teacher, tmp_path, capsys):
    common = ["evaluate", "--dataset", str(toy_data), "--k-core", "0", "--init", "scratch", "--seeds", "1",
              "--steps", "1", "--set", "eval.protocols=[full]"]
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"U\": ")
    assert main([*common, "--summary", str(truncated)]) == 2
    assert "cannot be read" in _error_line(capsys, "evaluate")
    assert main([*common, "--summary", str(toy_teacher / "best.pt")]) == 2  # not a summary at all
    assert "cannot be read" in _error_line(capsys, "evaluate")
    broken = tmp_path / "teacher"
    broken.mkdir()
    (broken / "best.pt").write_bytes((toy_teacher / "best.pt").read_bytes()[:500])
    assert main([*common, "--subset", "random", "--n", "5", "--teacher", str(broken)]) == 2
    assert "cannot be read" in _error_line(capsys, "evaluate")


# -- fuzzing: anything in, a dataset or a DataError out ----------------------------------------------------------

def _read_or_data_error(path: Path, data: bytes, fmt: str | None) -> None:
    path.write_bytes(data)
    try:
        dataset = load(path, fmt=fmt)
    except DataError as err:
        assert "\n" not in str(err)
        return
    assert dataset.n_users >= 1 and all(len(s) >= 3 for s in dataset.sequences)
    assert all(int(s.min()) >= 1 and int(s.max()) <= dataset.n_items for s in dataset.sequences)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
NAMES = st.sampled_from(["f.txt", "f.csv", "f.tsv", "f.inter", "f.jsonl", "f.parquet", "f.csv.gz"])
FORMAT_CHOICES = st.sampled_from([None, *FORMATS])


@FUZZ
@given(data=st.binary(max_size=300), fmt=FORMAT_CHOICES, name=NAMES)
def test_fuzz_readers_with_arbitrary_bytes(tmp_path_factory, data, fmt, name):
    _read_or_data_error(tmp_path_factory.mktemp("fuzz") / name, data, fmt)


TOKENS = st.one_of(st.integers(-10**25, 10**25).map(str), st.text(max_size=4),
                   st.sampled_from(["", "nan", "inf", "1.5", "1e400", "2020-01-01", '"q"', "é", "#", "True"]))


@st.composite
def tables(draw) -> bytes:
    """Interaction-file-like text: a header or not, rows of odd tokens, mixed separators and encodings,
    perhaps truncated or gzipped."""
    header = draw(st.sampled_from([None, "user_id,item_id,timestamp", "user_id:token\titem_id:token\ttimestamp:float",
                                   "user\titem", "reviewerID asin unixReviewTime"]))
    separators = draw(st.lists(st.sampled_from([",", "\t", " ", ";", "::", "|"]), min_size=1, max_size=3))
    rows = draw(st.lists(st.lists(TOKENS, max_size=5), max_size=10))
    lines = ([header] if header else []) + [separators[i % len(separators)].join(r) for i, r in enumerate(rows)]
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    data = text.encode(draw(st.sampled_from(["utf-8", "utf-16", "utf-8-sig"])))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return gzip.compress(data) if draw(st.integers(0, 5)) == 0 else data


@FUZZ
@given(data=tables(), fmt=FORMAT_CHOICES, name=NAMES)
def test_fuzz_readers_with_table_like_text(tmp_path_factory, data, fmt, name):
    _read_or_data_error(tmp_path_factory.mktemp("fuzz") / name, data, fmt)


@FUZZ
@given(records=st.lists(st.dictionaries(
    st.sampled_from(["user_id", "item_id", "timestamp", "asin", "reviewerID", "x"]),
    st.one_of(st.integers(-2**70, 2**70), st.floats(), st.text(max_size=3), st.none(), st.booleans(),
              st.lists(st.integers(), max_size=2))), max_size=8))
def test_fuzz_json_lines_readers(tmp_path_factory, records):
    data = "\n".join(json.dumps(r) for r in records).encode()
    _read_or_data_error(tmp_path_factory.mktemp("fuzz") / "f.jsonl", data, None)
