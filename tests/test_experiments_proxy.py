"""`td3rec proxy`: rank correlations (hand values, brute force, ties), top-k agreement, config validation, and an
end-to-end run on generated data with a real tiny summary."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from td3rec.cli import main
from td3rec.errors import ConfigError
from td3rec.experiments.proxy import (
    ProxyCandidate,
    ProxyConfig,
    agreement,
    kendall_tau_b,
    load_proxy_config,
    pessimistic_ranks,
    resolve_init,
    spearman,
    top_set,
)

from pipeline_support import distil_toy_summary, write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]


# -- rank correlations ------------------------------------------------------------------------------------
def test_rank_statistics_need_no_scipy():
    """scipy is not a dependency: the correlations (pandas' DataFrame.corr, unlike Series.corr) and the ranks
    work without it."""
    code = ("import sys; sys.modules['scipy'] = None\n"
            "from td3rec.experiments.proxy import agreement\n"
            "out = agreement([0.3, 0.1, 0.2, 0.4], [0.2, 0.1, 0.4, 0.3], list('abcd'), k=2)\n"
            "assert out['spearman'] is not None and out['kendall'] is not None, out\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spearman_hand_values():
    # y ranks 1, 2, 3.5, 5, 3.5: sxy = 8, sxx = 10, syy = 9.5 -> 8 / sqrt(95)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)) with d = (0, 2, -1, -1) -> 1 - 36 / 60
    assert spearman([1, 2, 3, 4], [1, 4, 2, 3]) == pytest.approx(0.4)
    assert spearman([0.1, 0.2, 0.3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)


def test_kendall_hand_values():
    # pairs of (12,1) (2,4) (1,7) (12,1) (2,0): 2 concordant, 6 discordant, 2 tied in x, 1 tied in y
    assert kendall_tau_b([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(-4 / math.sqrt(8 * 9))
    # no ties: tau-a; one inversion of six pairs -> (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_constant_or_tiny_sides_are_undefined():
    assert spearman([1, 1, 1], [1, 2, 3]) is None and kendall_tau_b([1, 2, 3], [5, 5, 5]) is None
    assert spearman([1], [2]) is None and kendall_tau_b([1], [2]) is None
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        kendall_tau_b([1, float("nan")], [1, 2])


def test_every_permutation_without_ties_matches_the_closed_forms():
    n = 6
    base = list(range(n))
    for perm in itertools.permutations(base):
        d2 = sum((a - b) ** 2 for a, b in zip(base, perm))
        inversions = sum(perm[i] > perm[j] for i in range(n) for j in range(i + 1, n))
        assert spearman(base, perm) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)))
        assert kendall_tau_b(base, perm) == pytest.approx(1 - 4 * inversions / (n * (n - 1)))


def _brute_spearman(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    rx = np.array([(x < v).sum() + ((x == v).sum() + 1) / 2 for v in x])
    ry = np.array([(y < v).sum() + ((y == v).sum() + 1) / 2 for v in y])
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _brute_kendall(x, y):
    sx = np.sign(np.subtract.outer(np.asarray(x, float), x))
    sy = np.sign(np.subtract.outer(np.asarray(y, float), y))
    denominator = math.sqrt((sx * sx).sum() * (sy * sy).sum())
    return None if denominator == 0 else float((sx * sy).sum() / denominator)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=12))
def test_correlations_match_brute_force_with_ties(pairs):
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    for ours, brute in ((spearman(x, y), _brute_spearman(x, y)), (kendall_tau_b(x, y), _brute_kendall(x, y))):
        if brute is None:
            assert ours is None
        else:
            assert ours == pytest.approx(brute, abs=1e-12) and -1 <= ours <= 1
    assert kendall_tau_b(x, y) == kendall_tau_b(y, x)


# -- top-k agreement --------------------------------------------------------------------------------------
NAMES = ["a", "b", "c", "d"]


def test_agreement_hand_case():
    proxy, full = [0.3, 0.1, 0.2, 0.4], [0.2, 0.1, 0.4, 0.3]
    out = agreement(proxy, full, NAMES, k=3)
    assert out["summary_ranks"] == [2, 4, 3, 1] and out["full_ranks"] == [3, 4, 1, 2]
    assert out["best_full"] == ["c"] and out["top1"] is False and out["best_in_top_k"] is True
    assert out["top_k_summary"] == ["d", "a", "c"] and out["top_k_full"] == ["c", "d", "a"]
    assert out["top_k_overlap"] == 3
    assert out["selected"] == "d" and out["regret"] == pytest.approx(0.1)
    two = agreement(proxy, full, NAMES, k=2)
    assert two["top_k_summary"] == ["d", "a"] and two["top_k_full"] == ["c", "d"]
    assert two["top_k_overlap"] == 1 and two["best_in_top_k"] is False
    same = agreement(full, full, NAMES, k=1)
    assert same["top1"] and same["regret"] == 0 and same["spearman"] == pytest.approx(1.0)


def test_ties_count_against():
    assert pessimistic_ranks([0.5, 0.5, 0.2]) == [2, 2, 3]
    assert top_set([0.5, 0.5, 0.2], 1) == []  # a tie for first place selects neither
    assert top_set([0.9, 0.5, 0.5, 0.2], 2) == [0]
    # a constant proxy selects nothing; the pick among ties is the first declared
    out = agreement([0.5] * 4, [0.1, 0.2, 0.3, 0.4], NAMES, k=3)
    assert out["top1"] is False and out["best_in_top_k"] is False and out["top_k_summary"] == []
    assert out["top_k_overlap"] == 0 and out["spearman"] is None and out["kendall"] is None
    assert out["selected"] == "a" and out["regret"] == pytest.approx(0.3)
    # two full-data bests: agreement when either is the summary's top-1
    tied = agreement([0.1, 0.2, 0.9, 0.3], [0.4, 0.1, 0.4, 0.3], NAMES, k=1)
    assert tied["best_full"] == ["a", "c"] and tied["top1"] is True and tied["top_k_full"] == []


# -- config validation ------------------------------------------------------------------------------------
def _config(*candidates: dict, **settings_) -> ProxyConfig:
    from td3rec.config import from_dict

    return from_dict(ProxyConfig, {"candidates": list(candidates), **settings_})


@pytest.mark.parametrize("candidates, settings_, message", [
    ([{"model": "sasrec"}], {}, "at least 2 candidates, got 1"),
    ([{"model": "sasrec"}, {"model": "transformer"}], {}, "unknown model 'transformer'"),
    ([{"model": "sasrec"}, {"model": "gru4rec", "model_options": {"hiden_size": 8}}], {}, "unknown option(s) 'hiden_size'"),
    ([{"model": "sasrec"}, {"model_options": {"hidden_size": 8}}], {}, "model is required"),
    ([{"model": "sasrec"}, {"model": "sasrec"}], {}, "are both named 'sasrec'"),
    ([{"model": "sasrec"}, {"model": "narm", "full_training": {"lrr": 1}}], {}, "unknown setting 'candidates[1].full_training.lrr'"),
    ([{"model": "sasrec"}, {"model": "narm", "summary_training": {"optimizer": "rmsprop"}}], {}, "adam or sgd"),
    ([{"model": "sasrec"}, {"model": "narm", "full_training": {"mode": "all"}}], {}, "mode must be prefix or window"),
    ([{"model": "sasrec"}, {"model": "narm", "init": "warm"}], {}, "init must be one of"),
    ([{"model": "sasrec"}, {"model": "narm"}], {"metrics": ["pop100:NDCG@10"]}, "not among eval.protocols"),
    ([{"model": "sasrec"}, {"model": "narm"}], {"metrics": ["full:NDCG@7"]}, "at one of eval.ks"),
    ([{"model": "sasrec"}, {"model": "narm"}], {"top_k": 0}, "top_k must be positive"),
])
def test_config_validation(candidates, settings_, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _config(*candidates, **settings_).validate()


def test_reserved_full_training_keys_are_unknown(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("candidates: [{model: sasrec}, {model: narm}]\nfull_training: {model: gru4rec}\n")
    with pytest.raises(ConfigError, match="unknown setting 'full_training.model'"):
        load_proxy_config(path)
    path.write_text("candidates: {model: sasrec}\n")
    with pytest.raises(ConfigError, match="must be a list of mappings"):
        load_proxy_config(path)


def test_shipped_example_config():
    config = load_proxy_config(ROOT / "benchmarks" / "proxy_ml100k.yaml")
    assert len(config.candidates) >= 12
    assert {c.model for c in config.candidates} == {"sasrec", "gru4rec", "narm", "bert4rec"}
    inits = [resolve_init(config, i, 32, None, 50)[0] for i in range(len(config.candidates))]
    assert "shared-item-factor" in inits and "scratch" in inits
    names = [c.label for c in config.candidates]
    assert inits[names.index("sasrec-h32-l1")] == "shared-item-factor"
    assert inits[names.index("sasrec-h64-l1")] == "scratch"


def test_default_names_and_init_rules():
    config = _config({"model": "sasrec", "model_options": {"hidden_size": 16}},
                     {"model": "gru4rec", "model_options": {"embedding_size": 8}, "summary_training": {"lr": 0.01}},
                     {"model": "sasrec", "model_options": {"hidden_size": 8}, "init": "shared-item-factor"},
                     {"model": "sasrec", "init": "reference"})
    assert config.candidates[0].label == "sasrec(hidden_size=16)"
    assert config.candidates[1].label == "gru4rec(embedding_size=8,summary.lr=0.01)"
    assert resolve_init(config, 0, 16, None, 50) == ("shared-item-factor", "auto: hidden_size 16 = width of V")
    assert resolve_init(config, 1, 16, None, 50)[0] == "scratch"
    with pytest.raises(ConfigError, match="shared-item-factor needs hidden_size = 16"):
        resolve_init(config, 2, 16, None, 50)
    with pytest.raises(ConfigError, match="needs --teacher"):
        resolve_init(config, 3, 16, None, 50)
    assert config.summary_training_for(1).lr == 0.01 and config.summary_training_for(0).lr == 0.005


# -- end to end -------------------------------------------------------------------------------------------
TINY = """
candidates:
  - {model: sasrec, model_options: {hidden_size: 16, inner_size: 16}}
  - {name: sasrec-h8, model: sasrec, model_options: {hidden_size: 8, inner_size: 8}}
  - {model: gru4rec, model_options: {embedding_size: 16, hidden_size: 16}, full_training: {lr: 0.003}}
summary_training: {steps: 8}
full_training: {mode: window, epochs: 2, patience: 1}
eval: {protocols: [full, uni50]}
metrics: ["full:NDCG@10", "uni50:NDCG@10"]
"""


@pytest.fixture(scope="module")
def toy_summary(tmp_path_factory):
    folder = tmp_path_factory.mktemp("proxy")
    toy = write_toy_dataset(folder)
    return toy, distil_toy_summary(toy, folder)


def _proxy(toy, summary, config, *extra):
    return main(["proxy", str(config), "--dataset", str(toy), "--k-core", "0", "--summary", str(summary),
                 "--no-progress", "--device", "cpu", *extra])


def test_cli_end_to_end(toy_summary, tmp_path, capsys):
    toy, summary = toy_summary
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "proxy.json"
    assert _proxy(toy, summary, config, "--json", str(out)) == 0
    text = capsys.readouterr().out
    assert "sasrec-h8" in text and "Spearman" in text and "speed-up" in text

    report = json.loads(out.read_text())
    assert report["status"] == "finished" and report["split"] == "valid" and report["max_len"] == 50
    rows = report["candidates"]
    assert [r["name"] for r in rows] == ["sasrec(hidden_size=16,inner_size=16)", "sasrec-h8",
                                         "gru4rec(embedding_size=16,hidden_size=16,full.lr=0.003)"]
    assert [r["init"] for r in rows] == ["shared-item-factor", "scratch", "shared-item-factor"]
    for r in rows:
        for side in ("summary", "full"):
            assert set(r[side]["valid"]) == {"full", "uni50"} and 0 <= r[side]["valid"]["full"]["NDCG@10"] <= 1
            assert r[side]["seconds"] > 0 and len(r[side]["runs"]) == 1
        assert set(r["full"]["test"]) == {"full", "uni50"} and 1 <= r["full"]["runs"][0]["best_epoch"] <= 2
        assert r["summary"]["training"]["steps"] == 8 and r["full"]["training"]["mode"] == "window"
    assert rows[2]["full"]["training"]["lr"] == 0.003 and rows[0]["full"]["training"]["lr"] == 0.001
    assert rows[0]["model_options"]["n_layers"] == 1  # the resolved learner settings, defaults included

    assert set(report["agreement"]) == {"full:NDCG@10", "uni50:NDCG@10"}
    for key, a in report["agreement"].items():
        proxy = [r["summary"]["valid"][key.split(":")[0]]["NDCG@10"] for r in rows]
        full = [r["full"]["valid"][key.split(":")[0]]["NDCG@10"] for r in rows]
        assert a == json.loads(json.dumps(agreement(proxy, full, [r["name"] for r in rows], 3)))
    t = report["time"]
    assert t["summary_search_seconds"] >= sum(r["summary"]["seconds"] for r in rows) > 0
    assert t["full_search_seconds"] == pytest.approx(sum(r["full"]["seconds"] for r in rows)) and t["full_search_seconds"] > 0
    assert t["speedup"] == pytest.approx(t["full_search_seconds"] / t["summary_search_seconds"])

    # --resume: unchanged candidates are taken from the report, a changed one is trained again
    assert _proxy(toy, summary, config, "--json", str(out), "--resume",
                  "--set", "candidates=" + json.dumps([{"model": "sasrec", "model_options": {"hidden_size": 16, "inner_size": 16}},
                                                       {"name": "sasrec-h8", "model": "sasrec",
                                                        "model_options": {"hidden_size": 8, "inner_size": 8},
                                                        "summary_training": {"steps": 9}}])) == 0
    again = json.loads(out.read_text())["candidates"]
    assert again[0] == rows[0]
    assert again[1]["summary"]["training"]["steps"] == 9  # trained again (a reused result would say 8)


def test_cli_user_mistakes_are_one_line_exit_2(toy_summary, tmp_path, capsys):
    toy, summary = toy_summary
    cases = [
        ("candidates: [{model: sasrec}]\n", "at least 2 candidates"),
        ("candidates: [{model: sasrec}, {model: lstm}]\n", "unknown model 'lstm'"),
        ("candidates: [{model: sasrec}, {model: narm, model_options: {depth: 3}}]\n", "unknown option(s) 'depth'"),
        ("candidates: [{model: sasrec}, {model: narm}]\nsteps: 3\n", "unknown setting 'steps'"),
        ("candidates: [{model: sasrec}, {model: narm, model_options: {embedding_size: 8}, init: shared-item-factor}]\n"
         "eval: {protocols: [full]}\nmetrics: ['full:NDCG@10']\n", "shared-item-factor needs embedding_size = 16"),
        ("candidates: [{model: sasrec}, {model: narm}]\n", "sampled evaluation with 100 negatives is impossible"),
    ]
    out = tmp_path / "never.json"
    for text, message in cases:
        config = tmp_path / "bad.yaml"
        config.write_text(text)
        assert _proxy(toy, summary, config, "--json", str(out)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("td3rec proxy: error:") and message in err[-1], err
        assert not any("Traceback" in line for line in err)
    assert not out.exists()  # refused before any training
    config = tmp_path / "ok.yaml"
    config.write_text("candidates: [{model: sasrec}, {model: narm}]\n")
    assert _proxy(toy, tmp_path / "missing.safetensors", config) == 2
    assert "does not exist" in capsys.readouterr().err


def test_benchmark_script_runs_on_toy_data(toy_summary, tmp_path, monkeypatch):
    toy, summary = toy_summary
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.replace("- {name: sasrec-h8", "# - {name: sasrec-h8"))
    spec = importlib.util.spec_from_file_location("proxy_ml100k", ROOT / "benchmarks" / "proxy_ml100k.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["proxy_ml100k.py", "--summary", str(summary), "--config", str(config),
                                      "--dataset", str(toy), "--k-core", "0", "--results", str(tmp_path / "res")])
    module.main()
    report = json.loads((tmp_path / "res" / "proxy_ml100k.json").read_text())
    assert report["status"] == "finished" and len(report["candidates"]) == 2
    assert report["meta"]["command"].startswith("python proxy_ml100k.py --summary")
    md = (tmp_path / "res" / "proxy_ml100k.md").read_text()
    assert "speed-up" in md and "| full:NDCG@10 |" in md and "Spearman" in md


def test_reference_init_needs_an_identical_teacher(toy_summary, tmp_path, capsys):
    toy, summary = toy_summary
    teacher = summary.parent.parent / "teacher"  # distil_toy_summary's teacher: sasrec, hidden 16, inner 16
    config = tmp_path / "ref.yaml"
    base = ("summary_training: {steps: 3}\nfull_training: {mode: window, epochs: 1}\neval: {protocols: [full]}\n"
            "metrics: ['full:NDCG@10']\n")
    config.write_text("candidates: [{name: ref, model: sasrec, model_options: {hidden_size: 8}, init: reference},"
                      " {model: narm}]\n" + base)
    assert _proxy(toy, summary, config, "--teacher", str(teacher)) == 2
    assert "only applies to a candidate identical to it" in capsys.readouterr().err
    config.write_text("candidates: [{name: ref, model: sasrec, model_options: {hidden_size: 16, inner_size: 16}, "
                      "init: reference}, {model: sasrec, model_options: {hidden_size: 8, inner_size: 8}}]\n" + base)
    out = tmp_path / "ref.json"
    assert _proxy(toy, summary, config, "--teacher", str(teacher), "--json", str(out)) == 0
    rows = json.loads(out.read_text())["candidates"]
    assert [r["init"] for r in rows] == ["reference", "scratch"]


# -- --full-from: the full-data side of an earlier report -----------------------------------------------------
@pytest.fixture(scope="module")
def earlier_report(toy_summary, tmp_path_factory):
    """A finished report of TINY on the toy summary: the full-data side that --full-from reuses."""
    toy, summary = toy_summary
    folder = tmp_path_factory.mktemp("earlier")
    config = folder / "tiny.yaml"
    config.write_text(TINY)
    out = folder / "earlier.json"
    assert _proxy(toy, summary, config, "--json", str(out)) == 0
    return out


@pytest.fixture(scope="module")
def new_summary(toy_summary, tmp_path_factory):
    """Another summary of the same data (the toy summary's factors scaled): a different file, other results."""
    from td3rec.summary.io import load_summary, save_summary

    _, summary = toy_summary
    tensors, meta = load_summary(summary)
    path = tmp_path_factory.mktemp("new") / "summary.safetensors"
    save_summary(path, {name: t * 1.5 for name, t in tensors.items()}, meta)
    return path


#: two of TINY's three candidates, in another order, with another summary schedule (summary side only)
SUBSET = """
candidates:
  - {model: gru4rec, model_options: {embedding_size: 16, hidden_size: 16}, full_training: {lr: 0.003}}
  - {name: sasrec-h8, model: sasrec, model_options: {hidden_size: 8, inner_size: 8}}
summary_training: {steps: 5}
full_training: {mode: window, epochs: 2, patience: 1}
eval: {protocols: [full, uni50]}
metrics: ["full:NDCG@10", "uni50:NDCG@10"]
"""


def _no_full_training(monkeypatch):
    """Make any full-data training fail the test."""
    import td3rec.training.trainer as trainer

    def refuse(*args, **kwargs):
        raise AssertionError("a full-data learner was trained despite --full-from")

    monkeypatch.setattr(trainer, "train_full_data", refuse)


def test_full_from_reuses_the_full_side(toy_summary, earlier_report, new_summary, tmp_path, monkeypatch, capsys):
    toy, _ = toy_summary
    config = tmp_path / "subset.yaml"
    config.write_text(SUBSET)
    fresh_path, reused_path = tmp_path / "fresh.json", tmp_path / "reused.json"
    assert _proxy(toy, new_summary, config, "--json", str(fresh_path)) == 0
    _no_full_training(monkeypatch)
    with pytest.raises(AssertionError, match="a full-data learner was trained"):  # the patch is in force
        _proxy(toy, new_summary, config)
    capsys.readouterr()
    assert _proxy(toy, new_summary, config, "--json", str(reused_path), "--full-from", str(earlier_report)) == 0
    assert f"reused from {earlier_report}" in capsys.readouterr().out

    earlier, fresh, reused = (json.loads(p.read_text()) for p in (earlier_report, fresh_path, reused_path))
    assert reused["summary_sha256"] != earlier["summary_sha256"] and reused["full_from"] == str(earlier_report)
    assert fresh["full_from"] is None and all("full_from" not in r for r in fresh["candidates"])
    before = {r["name"]: r for r in earlier["candidates"]}
    names = [r["name"] for r in reused["candidates"]]
    assert names == ["gru4rec(embedding_size=16,hidden_size=16,full.lr=0.003)", "sasrec-h8"]  # this config's order
    for row, fresh_row in zip(reused["candidates"], fresh["candidates"]):
        assert row["full"] == before[row["name"]]["full"]  # metrics, best epochs, seconds: as measured then
        assert row["full_from"] == str(earlier_report)
        assert row["summary"]["valid"] == fresh_row["summary"]["valid"]  # summary side: as a fresh run
        assert row["summary"]["runs"] == fresh_row["summary"]["runs"] and row["summary"]["training"]["steps"] == 5
    assert reused["time"]["full_search_seconds"] == pytest.approx(sum(before[n]["full"]["seconds"] for n in names))
    for key, a in reused["agreement"].items():
        proxy = [r["summary"]["valid"][key.split(":")[0]]["NDCG@10"] for r in reused["candidates"]]
        full = [r["full"]["valid"][key.split(":")[0]]["NDCG@10"] for r in reused["candidates"]]
        assert a == json.loads(json.dumps(agreement(proxy, full, names, 3)))

    # with --resume: the finished candidates are taken as they are (their full_from marks kept)
    assert _proxy(toy, new_summary, config, "--json", str(reused_path), "--full-from", str(earlier_report),
                  "--resume") == 0
    assert json.loads(reused_path.read_text())["candidates"] == reused["candidates"]


def test_benchmark_script_passes_full_from(toy_summary, earlier_report, new_summary, tmp_path, monkeypatch):
    toy, _ = toy_summary
    config = tmp_path / "subset.yaml"
    config.write_text(SUBSET)
    spec = importlib.util.spec_from_file_location("proxy_ml100k", ROOT / "benchmarks" / "proxy_ml100k.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _no_full_training(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["proxy_ml100k.py", "--summary", str(new_summary), "--config", str(config),
                                      "--dataset", str(toy), "--k-core", "0", "--results", str(tmp_path / "res"),
                                      "--full-from", str(earlier_report)])
    module.main()
    report = json.loads((tmp_path / "res" / "proxy_ml100k.json").read_text())
    assert report["status"] == "finished" and report["full_from"] == str(earlier_report)
    assert all(r["full_from"] == str(earlier_report) for r in report["candidates"])
    md = (tmp_path / "res" / "proxy_ml100k.md").read_text()
    assert f"full-data side of 2 of 2 candidates reused from {earlier_report}" in md
    assert "(measured when the reused report was made)" in md


def _full_from_file(kind: str, earlier: Path, out: Path) -> Path:
    """The --full-from file of a refusal case: the earlier report (``earlier``), a copy with a top-level key
    changed, another file, a missing one, or the output file itself (holding a copy of the earlier report)."""
    edits = {"running": {"status": "running"}, "fingerprint": {"fingerprint": "0" * 64}, "split": {"split": "test"}}
    path = out.parent / f"{kind}.json"
    if kind in edits:
        path.write_text(json.dumps({**json.loads(earlier.read_text()), **edits[kind]}))
    elif kind == "text":
        path.write_text("not a report\n")
    elif kind == "other-json":
        path.write_text(json.dumps({"candidates": 3}))
    elif kind == "same":
        out.write_text(earlier.read_text())
        return out
    elif kind == "earlier":
        return earlier
    return path


def _candidates(*extra: dict, h8: dict | None = None) -> str:
    """``--set candidates=...``: TINY's candidates, sasrec-h8 updated by ``h8``, then ``extra``."""
    rows = [{"model": "sasrec", "model_options": {"hidden_size": 16, "inner_size": 16}},
            {"name": "sasrec-h8", "model": "sasrec", "model_options": {"hidden_size": 8, "inner_size": 8},
             **(h8 or {})},
            {"model": "gru4rec", "model_options": {"embedding_size": 16, "hidden_size": 16},
             "full_training": {"lr": 0.003}}, *extra]
    return "candidates=" + json.dumps(rows)


@pytest.mark.parametrize("source, extra, message", [
    ("text", [], "is not a td3rec proxy report"),
    ("other-json", [], "is not a td3rec proxy report"),
    ("missing", [], "does not exist"),
    ("running", [], "is an unfinished proxy report (status 'running')"),
    ("fingerprint", [], "was made on other data"),
    ("split", [], "was measured on the 'test' users, this run on 'valid'"),
    ("earlier", ["--set", "max_len=40"], "was made with max_len 50, this run uses 40"),
    ("earlier", ["--set", "seeds=2"], "trained 1 seed(s) from seed 0, this run 2 from seed 0"),
    ("earlier", ["--set", "seed=1"], "trained 1 seed(s) from seed 0, this run 1 from seed 1"),
    ("earlier", ["--set", "full_training.lr=0.002"],
     "other full_training settings than this run: full_training.lr 0.002 here, 0.001 there"),
    ("earlier", ["--set", "eval.negative_seed=1"],
     "other eval settings than this run: eval.negative_seed 1 here, 0 there"),
    ("earlier", ["--set", _candidates({"model": "narm"})], "has no candidate 'narm'"),
    ("earlier", ["--set", _candidates(h8={"model_options": {"hidden_size": 4, "inner_size": 8}})],
     "candidate 'sasrec-h8' has other settings there: model_options.hidden_size 4 here, 8 there"),
    ("earlier", ["--set", _candidates(h8={"full_training": {"lr": 0.01}})],
     "candidate 'sasrec-h8' has other settings there: full_training.lr 0.01 here, 0.001 there"),
    ("earlier", ["--set", _candidates(h8={"model": "gru4rec", "model_options": {"embedding_size": 8}})],
     "candidate 'sasrec-h8' has other settings there: model \"gru4rec\" here, \"sasrec\" there"),
    ("same", [], "--json {out} would replace the run's own input (--full-from {out})"),
])
def test_full_from_mismatches_are_refused(toy_summary, earlier_report, new_summary, tmp_path, monkeypatch, capsys,
                                          source, extra, message):
    toy, _ = toy_summary
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "out.json"
    path = _full_from_file(source, earlier_report, out)
    _no_full_training(monkeypatch)
    before = out.read_text() if out.exists() else None
    assert _proxy(toy, new_summary, config, "--json", str(out), "--full-from", str(path), *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("td3rec proxy: error:")]
    assert len(errors) == 1 and errors[0] == err[-1] and message.format(out=out) in errors[0], err
    assert "--full-from" in errors[0] and not any("Traceback" in line for line in err)
    assert (out.read_text() if out.exists() else None) == before  # nothing written


def _edit_first_candidate(report: dict, edit) -> dict:
    edit(report["candidates"][0]["full"])
    return report


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["valid"]["full"].update({"NDCG@10": "0.3"}), "full.valid.full.NDCG@10 is \"0.3\", not a finite number"),
    (lambda f: f["valid"]["full"].update({"NDCG@10": float("nan")}), "full.valid.full.NDCG@10 is NaN, not a finite"),
    (lambda f: f["test"]["uni50"].update({"HR@10": float("inf")}), "full.test.uni50.HR@10 is Infinity, not a finite"),
    (lambda f: f["valid"]["full"].pop("NDCG@10"), "full.valid has no full:NDCG@10, which this run compares"),
    (lambda f: f["runs"][0]["valid"]["full"].update({"MRR@10": None}), "full.runs[0].valid.full.MRR@10 is null"),
    (lambda f: f.update(seconds=-5.0), "full.seconds is -5.0, not a non-negative, finite time"),
    (lambda f: f["runs"][0].update(seconds="12"), "full.runs[0].seconds is \"12\", not a non-negative"),
    (lambda f: f["runs"][0].update(seed=7), "full.runs has the seeds [7], this run trains [0]"),
    (lambda f: f["runs"][0].update(best_epoch=1.5), "full.runs[0].best_epoch is 1.5, not a whole number"),
])
def test_full_from_numbers_are_checked_before_any_training(toy_summary, earlier_report, new_summary, tmp_path,
                                                           monkeypatch, capsys, edit, message):
    """A --full-from report whose numbers are not what a finished run writes (a string, NaN, a negative time,
    other seeds ...) is refused with one line before the summary side trains, and the --json stays unwritten."""
    import td3rec.experiments.proxy as proxy

    toy, _ = toy_summary
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_edit_first_candidate(json.loads(earlier_report.read_text()), edit)))
    out = tmp_path / "out.json"
    _no_full_training(monkeypatch)

    def no_summary_training(*args, **kwargs):
        raise AssertionError("the summary side was trained before --full-from was checked")

    monkeypatch.setattr(proxy, "evaluate_sources", no_summary_training)
    assert _proxy(toy, new_summary, config, "--json", str(out), "--full-from", str(bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("td3rec proxy: error:")]
    assert len(errors) == 1 and errors[0] == err[-1] and message in errors[0], err
    assert "--full-from" in errors[0] and "candidate 'sasrec(hidden_size=16,inner_size=16)'" in errors[0]
    assert not any("Traceback" in line for line in err) and not out.exists()


def test_full_from_ignores_extra_candidates_and_summary_settings(toy_summary, earlier_report, new_summary, tmp_path,
                                                                monkeypatch):
    """Candidates of the earlier report that this run lacks are ignored; summary-side settings (init, schedule)
    may differ, since they do not touch the full-data side."""
    toy, _ = toy_summary
    config = tmp_path / "two.yaml"
    config.write_text(TINY.replace("- {name: sasrec-h8", "# - {name: sasrec-h8"))
    out = tmp_path / "two.json"
    _no_full_training(monkeypatch)
    assert _proxy(toy, new_summary, config, "--json", str(out), "--full-from", str(earlier_report),
                  "--set", "init=scratch", "--set", "summary_training.lr=0.01") == 0
    rows = json.loads(out.read_text())["candidates"]
    assert len(rows) == 2 and [r["init"] for r in rows] == ["scratch", "scratch"]
