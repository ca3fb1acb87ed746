"""`td3rec report`: from a small hand-made results file, the figures are written as valid, non-blank PNGs, the
quality tables show mean ± std and mark the best value of each column (never the full-data row), the cost
view computes speed-ups, and the report folder appears complete or not at all."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from td3rec.cli import main
from td3rec.experiments.report import distilled_through, load_results, write_report
from td3rec.utils.atomic import write_json

REPO = Path(__file__).resolve().parents[1]

METHODS = ["random", "popular", "farzi", "td3"]
# mean full:NDCG@10 per (method, arch, n): td3 best on sasrec, popular best on gru4rec
QUALITY = {
    ("random", "sasrec"): 0.10, ("popular", "sasrec"): 0.12, ("farzi", "sasrec"): 0.15, ("td3", "sasrec"): 0.20,
    ("random", "gru4rec"): 0.08, ("popular", "gru4rec"): 0.18, ("farzi", "gru4rec"): 0.09, ("td3", "gru4rec"): 0.11,
}


def _row(method, arch, n, seed, value, train_seconds, family="subset", init="shared-item-factor"):
    return {"dataset": "toy", "method": method, "kind": method, "family": family, "n": n,
            "seq_len": None if n is None else 10, "arch": arch, "init": init, "seed": seed, "status": "done",
            "reason": None, "full:NDCG@10": value, "uni100:NDCG@10": value + 0.2, "train_seconds": train_seconds,
            "data_seconds": 5.0 if family == "distill" else 0.01, "summary_parameters": 100 if family == "distill" else None,
            "summary_parameters_with_item_factor": 900 if family == "distill" else None,
            "data_interactions": 10 * (n or 100), "real_interactions": 1000,
            "size_fraction": 1.0 if n is None else 10 * n / 1000, "key": f"{method}-{arch}-{n}-{seed}"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    rows = []
    for seed, noise in enumerate((-0.01, 0.0, 0.01)):
        for arch in ("sasrec", "gru4rec"):
            # the full data scores above every budgeted method: it must never be marked
            rows.append(_row("whole", arch, None, seed, 0.30 + noise, 40.0 + seed, family="whole", init="full-data"))
            for n in (10, 30):
                for method in METHODS:
                    family = "distill" if method in ("farzi", "td3") else "subset"
                    bonus = 0.01 if n == 30 else 0.0
                    rows.append(_row(method, arch, n, seed, QUALITY[method, arch] + bonus + noise, 2.0, family))
    rows.append({**_row("td3", "narm", 10, 0, 0.0, None, "distill"), "status": "skipped", "full:NDCG@10": None,
                 "uni100:NDCG@10": None,
                 "reason": "shared-item-factor needs the learner's item embedding width (64) to equal V's (32)"})
    folder = tmp_path_factory.mktemp("bench") / "results"
    write_json(folder / "results.json", {
        "status": "finished", "cells_total": len(rows), "cells_finished": len(rows),
        "metrics": ["full:NDCG@10", "uni100:NDCG@10"], "rows": rows,
        "teachers": {"toy/sasrec": {"dataset": "toy", "arch": "sasrec", "train_seconds": 12.0}},
        "config": {"methods": [{"name": m} for m in ["whole"] + METHODS], "seeds": 3,
                   "datasets": [{"name": "toy"}], "archs": ["sasrec", "gru4rec"], "teacher": {"model": "sasrec"}}})
    return folder


@pytest.fixture(scope="module")
def report(results, tmp_path_factory):
    """The report rendered once for the checks that only read it."""
    return write_report(results, tmp_path_factory.mktemp("rendered") / "report")


def _table(markdown: str, heading: str) -> list[list[str]]:
    block = markdown.split(heading, 1)[1].strip().split("\n\n", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()]


def test_figures_are_valid_non_blank_pngs(report):
    out = report
    pngs = sorted((out / "figures").glob("*.png"))
    assert [p.name for p in pngs] == ["arch_bars_toy.png", "quality_vs_budget_toy.png", "quality_vs_size_toy.png",
                                      "quality_vs_time_toy.png"]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300
        colours = pixels.astype(np.int64) @ np.array([65536, 256, 1])
        assert len(np.unique(colours)) > 20  # lines, markers, text: not a blank canvas
        assert (pixels < 250).any(axis=-1).mean() > 0.01
    markdown = (out / "report.md").read_text()
    for png in pngs:
        assert f"](figures/{png.name})" in markdown


def test_tables_mark_the_best_mean_of_each_column(report):
    markdown = (report / "report.md").read_text()
    for n in (10, 30):
        table = _table(markdown, f"**n = {n} sequences, L = 10; shared-item-factor initialisation**")
        header, body = table[0], table[2:]
        assert header == ["method", "sasrec full:NDCG@10", "sasrec uni100:NDCG@10", "gru4rec full:NDCG@10",
                          "gru4rec uni100:NDCG@10"]
        assert [r[0] for r in body] == ["whole (full data)"] + METHODS
        assert not any("**" in cell for cell in body[0])  # the full-data reference is never bold
        bonus = 0.01 if n == 30 else 0.0
        for j, (arch, shift) in enumerate([("sasrec", 0), ("sasrec", 0.2), ("gru4rec", 0), ("gru4rec", 0.2)], 1):
            bold = [r[0] for r in body if r[j].startswith("**")]
            best = max(METHODS, key=lambda m: QUALITY[m, arch])
            assert bold == [best], (n, header[j], bold)
            cell = next(r[j] for r in body if r[0] == best)
            mean, std = map(float, re.fullmatch(r"\*\*([0-9.]+) ± ([0-9.]+)\*\*", cell).groups())
            assert mean == pytest.approx(QUALITY[best, arch] + bonus + shift, abs=1e-4)
            assert std == pytest.approx(np.std([-0.01, 0.0, 0.01]), abs=1e-4)


def test_cost_and_size_views(report):
    markdown = (report / "report.md").read_text()
    cost = _table(markdown, "### Cost (sasrec, shared-item-factor initialisation, full:NDCG@10)")
    td3 = next(r for r in cost[2:] if r[:2] == ["td3", "30"])
    assert td3[3] == "5.00" and td3[4] == "2.00" and td3[5] == "41.00" and td3[6] == "20.5"
    assert td3[8] == f"{100 * 0.21 / 0.30:.0f} %"
    size = _table(markdown, "### Size")
    assert ["td3", "10", "10", "100", "900", "100", "10.00 %"] in size[2:]
    assert "1 × skipped: shared-item-factor needs" in markdown
    verdict = _table(markdown, "### TD3 against Farzi and the real subsets (sasrec, shared-item-factor initialisation)")
    assert verdict[2:] == [[str(n), "10", m, f"{0.20 + (0.01 if n == 30 else 0) + (0.2 if m[0] == 'u' else 0):.4f}",
                            "3", "TD3 is best"] for n in (10, 30) for m in ("full:NDCG@10", "uni100:NDCG@10")]
    assert "12.00 s of training" in markdown


def test_transfer_matrix_is_each_architecture_relative_to_its_full_data(report):
    markdown = (report / "report.md").read_text()
    for n in (10, 30):
        table = _table(markdown, f"### Transfer: full:NDCG@10 relative to each architecture's full data (n = {n}, "
                                 "L = 10; shared-item-factor initialisation)")
        assert table[0] == ["summary", "distilled through", "sasrec", "gru4rec", "min"]
        bonus = 0.01 if n == 30 else 0.0
        assert [r[0] for r in table[2:]] == ["farzi", "td3"]  # distilled summaries only, not the real subsets
        for row in table[2:]:
            ratios = [(QUALITY[row[0], a] + bonus) / 0.30 for a in ("sasrec", "gru4rec")]  # the whole mean is 0.30
            assert row[1] == "sasrec" and row[2:] == [f"{100 * r:.0f}%" for r in ratios + [min(ratios)]]
    multi = {"teacher": {"model": "sasrec"}, "methods": ["td3", {"name": "td3-multi", "distill": {"model": "sasrec, narm"}}]}
    assert (distilled_through(multi, "td3"), distilled_through(multi, "td3-multi")) == ("sasrec", "sasrec,narm")


def test_cli_writes_a_complete_folder_and_needs_overwrite(results, tmp_path, capsys):
    results = shutil.copytree(results, tmp_path / "results")
    assert main(["report", str(results)]) == 0
    report = results / "report"
    assert (report / "report.md").is_file()
    first = (report / "report.md").read_text()
    assert main(["report", str(results / "results.json")]) == 2  # the default folder exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["report", str(results), "--overwrite", "--metrics", "uni100:NDCG@10", "--arch", "gru4rec"]) == 0
    second = (report / "report.md").read_text()
    assert second != first and "### Cost (gru4rec, shared-item-factor initialisation, uni100:NDCG@10)" in second
    # on GRU4Rec the popular subset beats TD3, and the report says so
    assert "| 10 | 10 | uni100:NDCG@10 | 0.3100 | 3 | **not best**: popular 0.3800 reach or beat it |" in second
    assert sorted(p.name for p in results.iterdir()) == ["report", "results.json"]  # no temporary folder left
    assert main(["report", str(results), "--out", str(tmp_path / "r2"), "--metrics", "full:HR@10"]) == 2
    assert "not in the results" in capsys.readouterr().err
    assert load_results(results)["status"] == "finished"


def test_verdict_without_rivals_claims_nothing():
    """A TD3 cell with no Farzi or subset at its budget (a partial grid) is not called best."""
    from td3rec.experiments.report import Group, ReportView, td3_verdict

    key = ("d", "td3", 30, 10, "sasrec", "shared-item-factor")
    groups = {key: Group(*key, rows=[{"full:NDCG@10": 0.2}])}
    view = ReportView(["full:NDCG@10"], "sasrec", "shared-item-factor", None)
    text = td3_verdict(groups, "d", ["td3", "random"], [(30, 10)], view)
    assert "no other method at this budget yet" in text and "TD3 is best" not in text
    groups[("d", "random", 30, 10, "sasrec", "shared-item-factor")] = Group(
        "d", "random", 30, 10, "sasrec", "shared-item-factor", rows=[{"full:NDCG@10": 0.1}])
    assert "TD3 is best" in td3_verdict(groups, "d", ["td3", "random"], [(30, 10)], view)


def test_quality_cell_with_missing_seeds_says_how_many():
    """A partial grid: a cell with 1 of 3 seeds is marked, complete cells are not."""
    from td3rec.experiments.report import Group, quality_table

    def group(method, values):
        return Group("d", method, 30, 10, "sasrec", "scratch", rows=[{"full:NDCG@10": v} for v in values])

    groups = {("d", "td3", 30, 10, "sasrec", "scratch"): group("td3", [0.3]),
              ("d", "random", 30, 10, "sasrec", "scratch"): group("random", [0.1, 0.2, 0.3])}
    table = quality_table(groups, "d", ["random", "td3"], [], 30, 10, "scratch", ["sasrec"], ["full:NDCG@10"], 3)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert rows["td3"].endswith("| **0.3000** (1 of 3 seeds) |")  # one seed: the mean alone, no "± 0.0000"
    assert "seeds" not in rows["random"] and "0.2000 ± 0.0816" in rows["random"]


def test_dataset_with_only_full_data_cells_shows_them(tmp_path):
    """A partial grid where one dataset has only whole cells: its section shows them, and no empty tables."""

    rows = [{"dataset": "big", "method": "whole", "kind": "whole", "family": "whole", "n": None, "seq_len": None,
             "arch": "sasrec", "init": "full-data", "seed": s, "status": "done", "full:NDCG@10": v,
             "train_seconds": 10.0, "real_interactions": 100, "size_fraction": 1.0}
            for s, v in enumerate([0.04, 0.05])]
    data = {"status": "partial", "cells_total": 6, "cells_finished": 2, "metrics": ["full:NDCG@10"], "teachers": {},
            "config": {"seeds": 3, "datasets": [{"name": "big", "distill": {"epochs": 1}}, {"name": "small"}],
                       "archs": ["sasrec"], "distill": {"epochs": 3}}, "rows": rows}
    write_json(tmp_path / "results.json", data)
    write_report(tmp_path, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Distillation: 3 outer epochs" in text and "On big the distillations differ: epochs 1." in text
    assert "On small" not in text
    assert "Only full-data cells have finished for this dataset." in text
    assert "| whole (full data) | 0.0450 ± 0.0050 (2 of 3 seeds) |" in text
    assert "### Size" not in text


def test_single_seed_and_single_epoch_wording(tmp_path):
    """A one-seed grid with one-epoch schedules: singular nouns, and every cell the mean alone (no "± 0.0000")."""
    rows = [_row("whole", "sasrec", None, 0, 0.30, 40.0, family="whole", init="full-data")]
    rows += [_row(m, "sasrec", 10, 0, QUALITY[m, "sasrec"], 2.0, "distill" if m in ("farzi", "td3") else "subset")
             for m in METHODS]
    write_json(tmp_path / "results.json", {
        "status": "finished", "cells_total": len(rows), "cells_finished": len(rows), "rows": rows,
        "metrics": ["full:NDCG@10", "uni100:NDCG@10"], "teachers": {},
        "config": {"methods": [{"name": m} for m in ["whole"] + METHODS], "seeds": 1, "datasets": [{"name": "toy"}],
                   "archs": ["sasrec"], "distill": {"epochs": 1, "inner_steps": 1},
                   "training": {"steps": 1, "optimizer": "adam", "lr": 0.005, "batch_size": 15},
                   "whole": {"mode": "window", "epochs": 1}}})
    text = (write_report(tmp_path, tmp_path / "report") / "report.md").read_text()
    assert "standard deviation over 1 seed." in text and "1 seeds" not in text
    assert "Distillation: 1 outer epoch, inner_steps 1," in text and "1 outer epochs" not in text
    assert "subsets: 1 step, adam" in text and "at most 1 epoch)." in text
    assert "±" not in text.split("## toy", 1)[1]
    quality = _table(text, "**n = 10 sequences, L = 10; shared-item-factor initialisation**")
    assert quality[2] == ["whole (full data)", "0.3000", "0.5000"] and quality[-1] == ["td3", "**0.2000**", "**0.4000**"]


def test_architecture_order_does_not_depend_on_string_hashes():
    """The per-architecture bars and the default architecture of the figures were ordered through a set of
    names, so they changed from one process to the next (string hashes are salted): now SASRec comes first, then
    the order of first appearance."""
    from td3rec.experiments.report import Group, ReportView, arch_figure, default_view

    archs = ["narm", "gru4rec", "sasrec", "bert4rec"]
    groups = {}
    for arch in archs:
        key = ("d", "td3", 30, 10, arch, "scratch")
        groups[key] = Group(*key, rows=[{"full:NDCG@10": 0.1}])
    figure = arch_figure(groups, "d", ["td3"], [], ReportView(["full:NDCG@10"], "sasrec", "scratch", 30))
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["sasrec", "narm", "gru4rec", "bert4rec"]
    rows = [{"dataset": "d", "method": "td3", "family": "distill", "n": 30, "arch": arch, "init": "scratch",
             "status": "done", "full:NDCG@10": 0.1} for arch in ("narm", "gru4rec", "bert4rec")]
    assert default_view({"rows": rows, "metrics": ["full:NDCG@10"]}).arch == "narm"


def test_report_names_a_distillation_time_budget_and_its_supports():
    """A grid distilled within a time budget says so (not the unused epoch count), with its supports."""
    from td3rec.experiments.report import build_markdown, default_view, load_results

    data = load_results(REPO / "benchmarks" / "results" / "amazon" / "beauty" / "results.json")
    text = build_markdown(data, default_view(data), {}, "x")
    assert "a 1800 s wall-clock budget each" in text and "top-64 supports" in text
    assert "30 outer epochs" not in text
    grid = load_results(REPO / "benchmarks" / "results" / "grid" / "results.json")
    assert "wall-clock budget" not in build_markdown(grid, default_view(grid), {}, "x")
