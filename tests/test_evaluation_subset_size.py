"""``td3rec evaluate``'s real subsets are as large as the summary they are compared with (n users, their last L
items), the table shows every row's size beside its label, and the log counts seeds in good English."""

from __future__ import annotations

import json

import pytest
import torch
from pipeline_support import write_toy_dataset
from summary_support import random_factors, write_summary

from td3rec.cli import main
from td3rec.commands.evaluate import format_rows
from td3rec.data import PreprocessConfig, load_dataset
from td3rec.errors import ConfigError
from td3rec.evaluation.subset_size import DEFAULT_SUBSET_USERS, data_size, size_text, subset_sizes
from td3rec.evaluation.sources import HardSequences
from td3rec.evaluation.suite import DataSpec, data_labels


@pytest.mark.parametrize(("summaries", "n", "seq_len", "expected"), [
    ([(50, 50)], None, None, [(50, 50)]),                  # the summary's size
    ([(50, 20), (10, 8), (50, 20)], None, None, [(50, 20), (10, 8)]),  # one subset per distinct size
    ([(50, 20)], 30, None, [(30, 20)]),                    # --n replaces n only
    ([(50, 20)], None, 12, [(50, 12)]),                    # --seq-len replaces L only
    ([(50, 20), (40, 20)], 30, None, [(30, 20)]),          # equal after --n: built once
    ([], None, None, [(DEFAULT_SUBSET_USERS, None)]),      # no summary: 30 users, max_len items
    ([], 7, 9, [(7, 9)]),
])
def test_subset_sizes_follow_the_summaries(summaries, n, seq_len, expected):
    assert subset_sizes(summaries, n, seq_len) == expected


def test_data_size_counts_sequences_the_longest_and_positions():
    source = HardSequences(torch.zeros(3, 5, dtype=torch.long), torch.tensor([2, 5, 4]))
    assert data_size(source) == {"n": 3, "seq_len": 5, "positions": 11}


def test_subsets_differing_only_in_length_get_their_length_in_the_label():
    specs = [DataSpec("random", n=4, seq_len=6), DataSpec("random", n=4, seq_len=8), DataSpec("longest", n=4, seq_len=6)]
    assert data_labels(specs) == ["random-4x6", "random-4x8", "longest-4"]
    with pytest.raises(ConfigError, match="given twice"):
        data_labels([DataSpec("random", n=4, seq_len=6), DataSpec("random", n=4, seq_len=6)])


def _row(data: str, size: dict) -> dict:
    return {"data": data, **size, "arch": "sasrec", "init": "scratch", "runs": [{}],
            "mean": {"full": {"HR@10": 0.5, "NDCG@10": 0.25}}, "std": {"full": {"HR@10": 0.0, "NDCG@10": 0.0}}}


def test_table_has_a_size_column():
    rows = [_row("summary:s.safetensors", {"n": 50, "seq_len": 50}), _row("random-50", {"n": 50, "seq_len": 48}),
            _row("whole", {"n": 943, "seq_len": None})]
    lines = format_rows(rows, ("full",)).splitlines()
    header = lines[0].split()
    assert header[:3] == ["data", "n×L", "arch"]
    assert [line.split()[1] for line in lines[2:]] == ["50×50", "50×48", "943×full"]
    assert size_text({"data": "old"}) == "?"  # a row without a size (an older JSON) is still printed


def test_evaluate_builds_subsets_of_the_summary_size(tmp_path, capsys):
    toy = write_toy_dataset(tmp_path)
    dataset = load_dataset(toy, PreprocessConfig(k_core=0))
    tensors = random_factors(n=4, length=6, n_items=dataset.n_items)
    summary = write_summary(tmp_path / "s.safetensors", tensors, tokens=[str(t) for t in dataset.item_tokens],
                            dataset_fingerprint=dataset.fingerprint())
    results = tmp_path / "r.json"
    assert main(["evaluate", "--dataset", str(toy), "--k-core", "0", "--summary", str(summary), "--subset", "random",
                 "--subset", "longest", "--init", "scratch", "--seeds", "1", "--steps", "2",
                 "--set", "eval.protocols=[full]", "--json", str(results)]) == 0
    captured = capsys.readouterr()
    rows = {r["data"]: r for r in json.loads(results.read_text())["rows"]}
    assert set(rows) == {"summary:s.safetensors", "random-4", "longest-4"}  # 4 users, not 30
    assert (rows["summary:s.safetensors"]["n"], rows["summary:s.safetensors"]["seq_len"]) == (4, 6)
    assert rows["summary:s.safetensors"]["positions"] == 24
    assert rows["random-4"]["n"] == 4 and rows["random-4"]["seq_len"] <= 6  # each user's last 6 items at most
    assert (rows["longest-4"]["n"], rows["longest-4"]["seq_len"], rows["longest-4"]["positions"]) == (4, 6, 24)
    table = {line.split()[0]: line.split()[1] for line in captured.out.splitlines() if line.startswith(tuple(rows))}
    assert table["summary:s.safetensors"] == "4×6" and table["longest-4"] == "4×6"
    assert "1 seed)" in captured.err and "1 seeds" not in captured.err


def test_evaluate_n_and_seq_len_override_the_summary_size(tmp_path):
    toy = write_toy_dataset(tmp_path)
    dataset = load_dataset(toy, PreprocessConfig(k_core=0))
    summary = write_summary(tmp_path / "s.safetensors", random_factors(n=4, length=6, n_items=dataset.n_items),
                            tokens=[str(t) for t in dataset.item_tokens], dataset_fingerprint=dataset.fingerprint())
    results = tmp_path / "r.json"
    assert main(["evaluate", "--dataset", str(toy), "--k-core", "0", "--summary", str(summary), "--subset", "longest",
                 "--n", "5", "--seq-len", "3", "--init", "scratch", "--seeds", "1", "--steps", "2",
                 "--set", "eval.protocols=[full]", "--json", str(results)]) == 0
    row = next(r for r in json.loads(results.read_text())["rows"] if r["data"].startswith("longest"))
    assert (row["data"], row["n"], row["seq_len"], row["positions"]) == ("longest-5", 5, 3, 15)


def test_evaluate_without_a_summary_keeps_30_users(tmp_path):
    toy = write_toy_dataset(tmp_path)
    results = tmp_path / "r.json"
    assert main(["evaluate", "--dataset", str(toy), "--k-core", "0", "--subset", "random", "--init", "scratch",
                 "--seeds", "1", "--steps", "2", "--set", "eval.protocols=[full]", "--json", str(results)]) == 0
    (row,) = json.loads(results.read_text())["rows"]
    assert (row["data"], row["n"]) == (f"random-{DEFAULT_SUBSET_USERS}", DEFAULT_SUBSET_USERS)


@pytest.mark.parametrize(("flag", "value", "message"), [("--n", "0", "--n must be positive"),
                                                        ("--seq-len", "1", "--seq-len must be at least 2")])
def test_bad_subset_sizes_are_one_error_line(tmp_path, capsys, flag, value, message):
    code = main(["evaluate", "--dataset", str(tmp_path / "missing.txt"), "--subset", "random", flag, value])
    assert code == 2 and message in capsys.readouterr().err


def test_a_subset_longer_than_the_position_table_is_refused(tmp_path, capsys):
    toy = write_toy_dataset(tmp_path)
    code = main(["evaluate", "--dataset", str(toy), "--k-core", "0", "--subset", "random", "--seq-len", "60",
                 "--init", "scratch", "--seeds", "1", "--steps", "2"])
    assert code == 2 and "longer than the sasrec learner accepts" in capsys.readouterr().err
