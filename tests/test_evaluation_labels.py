"""Labels of evaluated data: unique and never cut, files told apart by the shortest distinguishing path suffix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_support import write_toy_dataset
from summary_support import random_factors, write_summary

from td3rec.cli import main
from td3rec.commands.evaluate import format_rows
from td3rec.data import PreprocessConfig, load_dataset
from td3rec.errors import ConfigError
from td3rec.evaluation.suite import DataSpec, data_labels


def test_a_lone_file_is_named_by_its_file_name(tmp_path):
    specs = [DataSpec("summary", path=str(tmp_path / "td3" / "summary_best.safetensors")), DataSpec("random", n=30),
             DataSpec("whole")]
    assert data_labels(specs) == ["summary:summary_best.safetensors", "random-30", "whole"]


def test_same_named_files_are_told_apart_by_their_folders(tmp_path):
    specs = [DataSpec("summary", path=str(tmp_path / "runs" / name / "summary_best.safetensors"))
             for name in ("td3", "farzi")]
    assert data_labels(specs) == ["summary:td3/summary_best.safetensors", "summary:farzi/summary_best.safetensors"]


def test_each_file_gets_its_own_shortest_suffix(tmp_path):
    paths = [tmp_path / "a" / "td3" / "s.safetensors", tmp_path / "b" / "td3" / "s.safetensors",
             tmp_path / "farzi" / "s.safetensors", tmp_path / "other.safetensors"]
    labels = data_labels([DataSpec("summary", path=str(p)) for p in paths])
    assert labels == ["summary:a/td3/s.safetensors", "summary:b/td3/s.safetensors", "summary:farzi/s.safetensors",
                      "summary:other.safetensors"]


def test_relative_paths_are_compared_as_the_files_they_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    specs = [DataSpec("summary", path="x/../td3/s.safetensors"), DataSpec("summary", path="farzi/s.safetensors")]
    assert data_labels(specs) == ["summary:td3/s.safetensors", "summary:farzi/s.safetensors"]


def test_kinds_do_not_collide(tmp_path):
    specs = [DataSpec("summary", path=str(tmp_path / "a" / "f")), DataSpec("sequences", path=str(tmp_path / "b" / "f"))]
    assert data_labels(specs) == ["summary:f", "sequences:f"]


@pytest.mark.parametrize("specs", [
    [DataSpec("summary", path="s.safetensors"), DataSpec("summary", path="./s.safetensors")],
    [DataSpec("random", n=30), DataSpec("random", n=30)],
])
def test_the_same_data_twice_is_refused(specs):
    with pytest.raises(ConfigError, match="given twice"):
        data_labels(specs)


def _row(data: str, seeds: int) -> dict:
    return {"data": data, "arch": "sasrec", "init": "scratch", "mean": {"full": {"HR@10": 0.5, "NDCG@10": 0.25}},
            "std": {"full": {"HR@10": 0.0, "NDCG@10": 0.0}}, "runs": [{}] * seeds}


def test_table_shows_long_labels_whole_and_the_mean_alone_for_one_seed():
    long = "summary:" + "x" * 60 + "/summary_best.safetensors"
    text = format_rows([_row(long, 1), _row("random-30", 3)], ("full",))
    lines = text.splitlines()
    assert lines[2].startswith(long + " ") and lines[3].startswith("random-30 ")
    assert lines[2].index("sasrec") == lines[3].index("sasrec") == lines[0].index("arch")  # columns aligned
    assert "±" not in lines[2] and "0.5000 ± 0.0000" in lines[3]


def test_evaluate_two_same_named_summaries(tmp_path, capsys):
    toy = write_toy_dataset(tmp_path)
    dataset = load_dataset(toy, PreprocessConfig(k_core=0))
    paths = []
    for seed, name in enumerate(("td3", "farzi")):
        tensors = random_factors(n=4, length=6, n_items=dataset.n_items, seed=seed)
        paths.append(write_summary(tmp_path / name / "summary_best.safetensors", tensors,
                                   tokens=[str(t) for t in dataset.item_tokens],
                                   dataset_fingerprint=dataset.fingerprint()))
    results = tmp_path / "r.json"
    assert main(["evaluate", "--dataset", str(toy), "--k-core", "0", "--summary", str(paths[0]), "--summary",
                 str(paths[1]), "--init", "scratch", "--seeds", "1", "--steps", "2", "--set", "eval.protocols=[full]",
                 "--json", str(results)]) == 0
    out = capsys.readouterr().out
    labels = [r["data"] for r in json.loads(results.read_text())["rows"]]
    assert labels == ["summary:td3/summary_best.safetensors", "summary:farzi/summary_best.safetensors"]
    table = [line for line in out.splitlines() if line.startswith("summary:")]
    assert [line.split()[0] for line in table] == labels


def test_evaluate_refuses_one_summary_twice(tmp_path, capsys):
    path = write_summary(Path(tmp_path) / "s.safetensors")
    code = main(["evaluate", "--dataset", str(tmp_path / "missing.txt"), "--summary", str(path), "--summary",
                 str(path)])
    assert code == 2 and "given twice" in capsys.readouterr().err
