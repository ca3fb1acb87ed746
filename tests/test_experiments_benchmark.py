"""`td3rec benchmark`: a tiny grid runs, an interrupted run resumes without recomputing any finished cell (nor
the teacher or a finished distillation), a changed setting recomputes exactly the cells it affects, and the
example grids are valid configs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from td3rec.cli import main
from td3rec.distill.distiller import Distiller
from td3rec.errors import ConfigError
from td3rec.experiments.benchmark import runner
from td3rec.experiments.benchmark.config import BenchmarkMethod, load_benchmark_config
from td3rec.experiments.benchmark.plan import plan_cells
from td3rec.experiments.benchmark.runner import run_benchmark
from td3rec.experiments.benchmark.table import flat_row

REPO = Path(__file__).resolve().parents[1]


def _grid(toy_data: Path, folder: Path) -> Path:
    """9 cells: whole, then random, herding, td3 and farzi at n=4, L=6 under two protocols, one seed."""
    config = {
        "datasets": [{"name": "toy", "source": str(toy_data), "k_core": 0}],
        "methods": ["whole", "random", "herding", "td3", {"name": "farzi-full", "kind": "farzi",
                                                           "distill": {"farzi_decoder": "full"}}],
        "budgets": [4], "seq_lens": [6], "archs": ["sasrec"], "inits": ["shared-item-factor", "scratch"],
        "seeds": 1, "max_len": 20,
        "model_options": {"sasrec": {"hidden_size": 16, "inner_size": 16}},
        "teacher": {"mode": "window", "epochs": 2, "window_batch_size": 16},
        "distill": {"d1": 3, "d2": 3, "farzi_latent_dim": 3, "inner_steps": 3, "window": 2, "real_batch_size": 512,
                    "epochs": 1, "trajectory_epochs": [1, 2], "eval_steps": 5, "select_metric": "full:MRR@10"},
        "training": {"steps": 5},
        "whole": {"mode": "window", "epochs": 1, "window_batch_size": 32},
        "device": "cpu", "eval": {"protocols": ["full"]},
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.glob("*.json"))}


def test_interrupted_benchmark_resumes_without_recomputing(toy_data, tmp_path, monkeypatch):
    config_path = _grid(toy_data, tmp_path)
    results = tmp_path / "results"
    computed: list[str] = []
    original = runner.compute_cell

    def interrupt_after_six(cell, ctx):
        if len(computed) == 6:  # the 7th cell: the td3 summary is distilled, one of its two cells finished
            raise KeyboardInterrupt
        computed.append(cell.key)
        return original(cell, ctx)

    monkeypatch.setattr(runner, "compute_cell", interrupt_after_six)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(load_benchmark_config(config_path), results, progress=False)
    cells = _snapshot(results / "cells")
    assert sorted(cells) == sorted(f"{key}.json" for key in computed) and len(cells) == 6
    table = json.loads((results / "results.json").read_text())
    assert table["status"] == "interrupted" and table["cells_finished"] == 6 and table["cells_total"] == 9
    [teacher] = (results / "teachers").iterdir()
    [td3] = [p for p in (results / "summaries").iterdir() if "-td3-" in p.name]
    teacher_files = {p: p.stat().st_mtime_ns for p in teacher.rglob("*") if p.is_file()}
    summary_mtime = (td3 / "summary_best.safetensors").stat().st_mtime_ns

    # --table-only computes nothing and tables the 6 finished cells, with the teacher's training time
    monkeypatch.setattr(runner, "compute_cell", lambda cell, ctx: pytest.fail("--table-only computed a cell"))
    assert main(["benchmark", str(config_path), "--results", str(results), "--no-progress", "--table-only"]) == 0
    table = json.loads((results / "results.json").read_text())
    assert table["status"] == "partial" and table["cells_finished"] == 6 and len(table["rows"]) == 6
    assert [t["train_seconds"] > 0 for t in table["teachers"].values()] == [True]
    assert _snapshot(results / "cells") == cells

    # resume: only the 3 missing cells are computed; finished cells, the teacher and the summary are untouched
    resumed: list[str] = []

    def counting(cell, ctx):
        resumed.append(cell.key)
        return original(cell, ctx)

    monkeypatch.setattr(runner, "compute_cell", counting)
    assert main(["benchmark", str(config_path), "--results", str(results), "--no-progress"]) == 0
    assert len(resumed) == 3 and not set(resumed) & set(computed)
    after = _snapshot(results / "cells")
    assert {name: after[name] for name in cells} == cells  # same bytes, same modification times
    assert len(after) == 9
    assert {p: p.stat().st_mtime_ns for p in teacher.rglob("*") if p.is_file()} == teacher_files
    assert (td3 / "summary_best.safetensors").stat().st_mtime_ns == summary_mtime
    table = json.loads((results / "results.json").read_text())
    assert table["status"] == "finished" and len(table["rows"]) == 9
    rows = {(r["method"], r["init"]): r for r in table["rows"]}
    assert rows[("whole", "full-data")]["size_fraction"] == 1.0
    assert all(r["status"] == "done" and 0 <= r["full:NDCG@10"] <= 1 for r in table["rows"])
    assert rows[("td3", "scratch")]["summary_parameters"] == 4 * 3 + 6 * 3 + 3 * 3 * 16
    assert rows[("farzi-full", "scratch")]["summary_parameters"] == 4 * 6 * 3 + 3 * 120
    assert rows[("td3", "scratch")]["data_seconds"] > 0
    csv_lines = (results / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 10 and "full:NDCG@10" in csv_lines[0]

    # a finished grid computes nothing (and distils nothing)
    resumed.clear()
    monkeypatch.setattr(Distiller, "run", lambda *a, **k: pytest.fail("a finished summary was distilled again"))
    result = run_benchmark(load_benchmark_config(config_path), results, progress=False)
    assert resumed == [] and result.computed == 0 and result.reused == 9

    # a changed learner setting recomputes exactly the cells it affects (not whole, not the summaries)
    result = run_benchmark(load_benchmark_config(config_path, ["training.steps=4"]), results, progress=False)
    assert result.computed == 8 and result.reused == 1 and len(resumed) == 8

    # and the report renders from these results
    assert main(["report", str(results)]) == 0
    assert (results / "report" / "report.md").is_file()


def test_example_grids_are_valid():
    small = load_benchmark_config(REPO / "benchmarks" / "grid_small.yaml")
    assert Path(small.datasets[0].source).is_file()
    names = [m.name for m in small.methods]
    for method in ("whole", "random", "longest", "popular", "herding", "kcenter", "farzi", "td3", "td3-no-feature",
                   "td3-no-augment", "td3-fixed-unroll", "td3-learned-v", "td3-reset-step"):
        assert method in names
    grid = load_benchmark_config(REPO / "benchmarks" / "grid.yaml")
    assert {d.source for d in grid.datasets} == {"ml-100k", "amazon-beauty"}
    assert grid.budgets == [10, 30, 50, 100] and grid.seeds == 3
    assert set(grid.archs) == {"sasrec", "gru4rec", "narm", "bert4rec"}


@pytest.mark.parametrize("override, message", [
    ("methods=[td3, newest]", "unknown kind"),
    ("budgets=[0]", "budgets must be positive"),
    ("archs=[transformer]", "unknown architecture"),
    ("inits=[warm]", "unknown protocol"),
    ("distill.window=9", "window 9 is larger than inner_steps 4"),
    ("teacher.model_options={hidden_size: 8}", "model_options.sasrec"),
    ("seq_lens=[30]", "reads at most 20"),
])
def test_bad_grids_are_refused_before_work(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        load_benchmark_config(REPO / "benchmarks" / "grid_small.yaml", [override])


def test_method_overrides_resolve(tmp_path):
    config = load_benchmark_config(REPO / "benchmarks" / "grid_small.yaml", ["budgets=[2]"])
    methods = {m.name: m for m in config.methods}
    assert config.distill_config(methods["td3-no-augment"], 2, 8).inner.augment is False
    assert config.distill_config(methods["td3"], 2, 8).inner.batch_size == 2  # capped at n
    assert config.distill_config(methods["farzi"], 2, 8).method == "farzi"
    assert config.distill_config(methods["td3-reset-step"], 2, 8).reset == "step"
    full = BenchmarkMethod(name="td3-full-bptt")
    resolved = config.distill_config(full, 2, 8)
    assert resolved.window == resolved.inner_steps and resolved.random_unroll is False
    dotted = BenchmarkMethod(name="td3-lr", kind="td3", distill={"inner.lr": 0.01, "outer_lr": 0.1})
    resolved = config.distill_config(dotted, 2, 8)
    assert resolved.inner.lr == 0.01 and resolved.outer_lr == 0.1 and resolved.inner.augment is True


def test_slices_are_a_union_of_products_without_duplicates():
    config = load_benchmark_config(REPO / "benchmarks" / "grid_small.yaml", [
        "slices=[{archs: [sasrec], budgets: [6, 12]}, {archs: [sasrec, gru4rec], budgets: [6]}]"])
    cells = plan_cells(config, {"toy": "fingerprint"})
    assert len({c.key for c in cells}) == len(cells)
    whole = [c for c in cells if c.kind == "whole"]
    assert sorted((c.arch, c.seed) for c in whole) == [("gru4rec", 0), ("gru4rec", 1), ("sasrec", 0), ("sasrec", 1)]
    others = [c for c in cells if c.kind != "whole"]
    # 12 budgeted methods x 2 protocols x 2 seeds: sasrec at n = 6 and 12, gru4rec at n = 6 only
    assert {(c.arch, c.n) for c in others} == {("sasrec", 6), ("sasrec", 12), ("gru4rec", 6)}
    assert len(others) == 12 * 2 * 2 * 3
    assert len(plan_cells(load_benchmark_config(REPO / "benchmarks" / "grid_small.yaml"),
                          {"toy": "fingerprint"})) == 2 * 2 + 12 * 2 * 2 * 2 * 2
    with pytest.raises(ConfigError, match="slices\\[0\\]: methods"):
        load_benchmark_config(REPO / "benchmarks" / "grid_small.yaml", ["slices=[{methods: [td4]}]"])


def test_cell_keys_ignore_later_settings_at_their_neutral_value(toy_data, tmp_path):
    """Adding the `precision` setting (default fp32) must not change the key of any cell computed before it
    existed; a non-default precision must."""
    config = load_benchmark_config(_grid(toy_data, tmp_path))
    cells = plan_cells(config, {"toy": "f"})
    td3 = next(c for c in cells if c.kind == "td3")
    assert "precision" not in td3.settings["distill"]
    config.distill.precision = "bf16"
    bf16 = next(c for c in plan_cells(config, {"toy": "f"}) if c.kind == "td3")
    assert bf16.settings["distill"]["precision"] == "bf16" and bf16.key != td3.key
    config.distill.precision = "fp32"


@pytest.mark.parametrize("key, value", [("support_size", 8), ("support_refresh", 3), ("outer_negatives", 64),
                                        ("time_budget", 60.0), ("inner.negatives", 32),
                                        ("learner_start", "protocol"), ("time_budget_clock", "cpu"),
                                        ("init_from", "longest"), ("init_fit_steps", 50),
                                        ("item_factor_scale", 4.0)])
def test_cell_keys_ignore_the_large_catalogue_settings_at_their_neutral_value(toy_data, tmp_path, key, value):
    config = load_benchmark_config(_grid(toy_data, tmp_path))
    config.methods = [m for m in config.methods if m.name != "farzi-full"]  # (no support for a full decoder)
    td3 = next(c for c in plan_cells(config, {"toy": "f"}) if c.kind == "td3")
    *parent, leaf = key.split(".")
    assert leaf not in (td3.settings["distill"][parent[0]] if parent else td3.settings["distill"])
    setattr(config.distill.inner if parent else config.distill, leaf, value)
    changed = next(c for c in plan_cells(config, {"toy": "f"}) if c.kind == "td3")
    node = changed.settings["distill"][parent[0]] if parent else changed.settings["distill"]
    assert node[leaf] == value and changed.key != td3.key


def test_subsets_share_the_summaries_scaled_item_factor(toy_data, tmp_path):
    """A grid whose summaries scale V gives its real subsets the same V: their keys change with the scale (and
    only theirs and the summaries'), and the V they are trained with is the scaled teacher embedding."""
    config = load_benchmark_config(_grid(toy_data, tmp_path))
    before = {c.label: c.key for c in plan_cells(config, {"toy": "f"})}
    config.distill.item_factor_scale = 4.0
    after = {c.label: (c.key, c.kind) for c in plan_cells(config, {"toy": "f"})}
    for label, (key, kind) in after.items():
        assert (key != before[label]) == (kind != "whole"), label
    from td3rec.experiments.benchmark.compute import DatasetContext

    class _Teacher:  # (only its item vectors are read)
        class model:
            @staticmethod
            def item_vectors():
                return torch.ones(3, 2)

    ctx = DatasetContext.__new__(DatasetContext)
    ctx.config, ctx.device = config, torch.device("cpu")
    ctx.teacher = lambda arch: _Teacher
    assert torch.equal(ctx.item_factor(), torch.full((3, 2), 4.0))


def test_dataset_distill_overrides_apply_to_that_dataset_only(toy_data, tmp_path):
    """A dataset's `distill` overrides change its distillations (and only their cells' keys); a method's own
    overrides still apply on top; a bad override is refused before any work."""
    path = _grid(toy_data, tmp_path)
    plain = load_benchmark_config(path)
    data = yaml.safe_load(path.read_text())
    data["datasets"].append({"name": "toy2", "source": str(toy_data), "k_core": 0,
                             "distill": {"epochs": 2, "inner.lr": 0.5}})
    path.write_text(yaml.safe_dump(data))
    config = load_benchmark_config(path)
    toy, toy2 = config.datasets
    td3 = next(m for m in config.methods if m.name == "td3")
    assert config.distill_config(td3, 4, 6, toy2).epochs == 2 and config.distill_config(td3, 4, 6, toy).epochs == 1
    assert config.distill_config(td3, 4, 6, toy2).inner.lr == 0.5
    assert config.distill_config(td3, 4, 6, toy).inner.lr == config.distill.inner.lr
    no_augment = BenchmarkMethod(name="td3-no-augment")
    resolved = config.distill_config(no_augment, 4, 6, toy2)
    assert resolved.inner.augment is False and resolved.epochs == 2
    before = {c.label: c.key for c in plan_cells(plain, {"toy": "f"})}
    after = plan_cells(config, {"toy": "f", "toy2": "f"})
    assert all(before[c.label] == c.key for c in after if c.dataset == "toy")
    distilled = [c for c in after if c.dataset == "toy2" and c.family == "distill"]
    assert distilled and all(c.settings["distill"]["epochs"] == 2 for c in distilled)
    data["datasets"][1]["distill"] = {"window": 99}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="on toy2: .*window 99"):
        load_benchmark_config(path)


def test_results_table_has_the_distillation_seed_of_distilled_data_only():
    record = {"dataset": "d", "method": "td3-s2", "kind": "td3", "seed": 1, "status": "done",
              "settings": {"distill": {"seed": 2}}, "test": {"full": {"NDCG@10": 0.5}}}
    row = flat_row(record, ["full:NDCG@10"])
    assert row["distill_seed"] == 2 and row["seed"] == 1 and row["full:NDCG@10"] == 0.5
    assert list(row)[:11] == ["dataset", "method", "kind", "family", "n", "seq_len", "arch", "init", "seed",
                              "distill_seed", "status"]
    subset = flat_row({"kind": "longest", "settings": {"teacher": {"seed": 0}}}, [])
    assert subset["distill_seed"] is None


# -- the committed grid's cell keys -------------------------------------------------------------------------
def _committed_fingerprints() -> dict[str, str]:
    """The dataset fingerprints the committed grid's cells were computed with (from their settings)."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "benchmarks" / "results" / "grid" / "cells").glob("*.json"):
        settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
        found.setdefault(settings["dataset"], set()).add(settings["fingerprint"])
    assert all(len(v) == 1 for v in found.values()), found
    return {name: next(iter(v)) for name, v in found.items()}


def test_grid_cell_keys_are_the_recorded_ones():
    """`benchmarks/grid.yaml` planned with fixed fingerprints gives the keys recorded in
    tests/data/grid_cell_keys.json (saved before the experiment layer moved): moving or splitting code must not
    change a key, or every finished cell would be recomputed."""
    config = load_benchmark_config(REPO / "benchmarks" / "grid.yaml")
    keys = sorted(c.key for c in plan_cells(config, {"ml-100k": "a", "beauty": "b"}))
    assert keys == json.loads((REPO / "tests" / "data" / "grid_cell_keys.json").read_text(encoding="utf-8"))


def test_committed_grid_cells_are_planned_by_the_grid():
    """Every row of the committed results table is a cell that `benchmarks/grid.yaml` plans for the real
    datasets (their fingerprints as the cells recorded them): a rerun would reuse them all."""
    config = load_benchmark_config(REPO / "benchmarks" / "grid.yaml")
    planned = {c.key for c in plan_cells(config, _committed_fingerprints())}
    with open(REPO / "benchmarks" / "results" / "grid" / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["key"] for row in rows} <= planned


def test_two_processes_share_a_results_folder(toy_data, tmp_path):
    """Two `td3rec benchmark` processes started together on one results folder split the grid: both succeed,
    every cell is computed once, and each teacher and summary is made by one process only (a summary written
    by two would have an interleaved step log)."""
    import os
    import subprocess
    import sys

    config_path = _grid(toy_data, tmp_path)
    results = tmp_path / "results"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "td3rec", "benchmark", str(config_path), "--results", str(results),
               "--no-progress"]
    children = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [child.communicate(timeout=600) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err[-2000:] for _, err in outputs]
    computed = [int(out.split(" computed now")[0].split(": ")[-1]) for out, _ in outputs]
    assert sum(computed) == 9  # each cell once, by one of the two
    table = json.loads((results / "results.json").read_text())
    assert table["cells_finished"] == 9
    for run in (results / "summaries").iterdir():
        steps = [json.loads(line)["step"] for line in (run / "steps.jsonl").read_text().splitlines()]
        assert steps == list(range(1, len(steps) + 1)), run.name
    assert len(list((results / "teachers").iterdir())) == 1
