"""``td3rec datasets`` and ``td3rec stats`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

import td3rec.cli as cli
import td3rec.data.download as download_module
from td3rec.data import dataset_stats, load_dataset
from td3rec.data.preprocess import PreprocessConfig


@pytest.fixture(autouse=True)
def data_commands_only(monkeypatch):
    """Build the parser with the data commands only, so these tests do not depend on other sub-commands."""
    monkeypatch.setattr(cli, "COMMANDS", ["datasets", "stats"])

    def offline(request, timeout=None):
        raise URLError("network is unreachable")

    monkeypatch.setattr(download_module, "urlopen", offline)


def _log_csv(path: Path, seed: int = 0, n: int = 2000) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write("who,what,rating,when\n")
        for u, i, t in zip(rng.integers(0, 80, n), rng.integers(0, 60, n), rng.integers(0, 10**6, n)):
            f.write(f"u{u},i{i},5,{t}\n")
    return path


def test_datasets_lists_registry_and_cache_state(tmp_path: Path, capsys) -> None:
    (tmp_path / "Beauty.txt").write_text("1 2 3 4\n")
    assert cli.main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"dataset cache: {tmp_path}" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in
            ("ml-100k", "ml-1m", "amazon-beauty", "amazon-toys", "amazon-sports")}
    assert set(rows) == {"ml-100k", "ml-1m", "amazon-beauty", "amazon-toys", "amazon-sports"}
    assert "5-core single-pass" in rows["ml-100k"] and "files.grouplens.org" in rows["ml-100k"]
    assert "Beauty.txt" in rows["amazon-beauty"] and " no " in rows["amazon-toys"]


def test_stats_prints_what_dataset_stats_computes(tmp_path: Path, capsys) -> None:
    path = _log_csv(tmp_path / "log.csv")
    args = ["stats", str(path), "--user-col", "who", "--item-col", "what", "--time-col", "4", "--k-core", "3",
            "--k-core-mode", "single-pass"]
    assert cli.main(args + ["--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = dataset_stats(load_dataset(str(path), PreprocessConfig(k_core=3, k_core_mode="single-pass"),
                                          columns={"user": "who", "item": "what", "time": "when"}))
    assert printed == expected
    assert printed["preprocessing"] == {"k_core": 3, "k_core_mode": "single-pass", "top_items": 0}
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert f"users          {expected['users']:,}" in text
    assert f"interactions   {expected['interactions']:,}" in text
    assert "3-core single-pass" in text and f"max {expected['sequence_length']['max']}" in text
    assert cli.main(args + ["--top-items", "4"]) == 0  # the cut is shown with the preprocessing
    assert "top 4 items, 3-core single-pass" in capsys.readouterr().out


def test_stats_k_core_option_changes_the_result(tmp_path: Path, capsys) -> None:
    path = _log_csv(tmp_path / "log.csv", seed=1)
    results = []
    for k in ("0", "20"):
        assert cli.main(["stats", str(path), "--user-col", "who", "--item-col", "what", "--k-core", k, "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["interactions"] > results[1]["interactions"]
    assert results[1]["sequence_length"]["min"] >= 20


BAD = [
    # (file name, content, extra args, fragments of the error line)
    ("empty.csv", "", [], ["empty.csv", "empty"]),
    ("cols.csv", "a,b\n1,2\n", [], ["cols.csv", "no user column", "--user-col"]),
    ("sep.csv", "user_id,item_id\n1,2\n", ["--format", "tsv"], ["sep.csv", "--format csv"]),
    ("time.csv", "user_id,item_id,ts\n1,2,x\n", [], ["time.csv", "line 2", "'x'"]),
    ("junk.bin", b"\x00\x01\x02\xff", [], ["junk.bin", "binary"]),
    ("bytes.txt", b"1 2 3\n\xff\xfe 3\n", [], ["bytes.txt", "line 2", "UTF-8"]),
    ("small.txt", "1 2 3\n2 3 4\n", [], ["small.txt", "nothing left after 5-core"]),
]


@pytest.mark.parametrize("name, content, extra, fragments", BAD, ids=[b[0] for b in BAD])
def test_stats_bad_input_exits_2_with_one_line(tmp_path: Path, capsys, name, content, extra, fragments) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert cli.main(["stats", str(path), *extra]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("td3rec stats: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_stats_unknown_name_missing_path_and_bad_options(tmp_path: Path, capsys) -> None:
    assert cli.main(["stats", "movielens-1m", "--data-dir", str(tmp_path)]) == 2
    assert "did you mean 'ml-1m'" in capsys.readouterr().err
    assert cli.main(["stats", str(tmp_path / "gone.txt")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert cli.main(["stats", "ml-1m", "--format", "csv", "--data-dir", str(tmp_path)]) == 2
    assert "only apply to files" in capsys.readouterr().err
    assert cli.main(["stats", str(_log_csv(tmp_path / "l.csv")), "--format", "xlsx"]) == 2
    assert "unknown format 'xlsx'" in capsys.readouterr().err
    assert cli.main(["stats", str(tmp_path / "l.csv"), "--user-col", "0"]) == 2
    assert "column numbers count from 1" in capsys.readouterr().err


def test_stats_offline_registry_dataset_says_where_to_put_the_file(tmp_path: Path, capsys) -> None:
    assert cli.main(["stats", "ml-1m", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "ml-1m.zip" in err and str(tmp_path) in err and "network is unreachable" in err


@pytest.mark.realdata
def test_stats_on_real_ml100k(real_data_dir: Path, real_file, capsys) -> None:
    real_file("ml-100k.inter")
    assert cli.main(["stats", "ml-100k", "--data-dir", str(real_data_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1349, 99_287)
    assert cli.main(["stats", "ml-100k", "--data-dir", str(real_data_dir), "--k-core-mode", "iterative",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["preprocessing"]["k_core_mode"] == "iterative"
