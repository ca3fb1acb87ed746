"""The diagnosis table of a grid of distillation variants (issue 22): for every TD3/Farzi method, its settings
(over the grid's `distill` section), the outer steps it did within its budget, its validation at every outer
epoch (the selection metric), the CPU and wall seconds it used, and the test quality of its selected summary
(mean ± std over the learner seeds) as a share of Whole's. Writes `table.csv`, `table.md` and a copy of every
summary run's `metrics.json`, `config.yaml` and `steps.jsonl` (the validation curves) under OUT.

    python benchmarks/diagnosis/table.py runs/diagnosis/beauty --out benchmarks/results/diagnosis/beauty
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import statistics
from pathlib import Path

import yaml

METRICS = ("full:NDCG@10", "uni100:NDCG@10")


def _settings(method: dict) -> str:
    """A method's own distillation overrides, flattened to ``key=value``."""
    flat: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat.append(f"{prefix}{key}={value}")

    walk(method.get("distill") or {}, "")
    return ", ".join(flat) or "(the grid's settings)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the grid's results folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    grid = yaml.safe_load((args.results / "benchmark.yaml").read_text())
    rows = list(csv.DictReader((args.results / "results.csv").open()))
    whole = {m: statistics.fmean(float(r[m]) for r in rows if r["method"] == "whole" and r[m]) for m in METRICS}
    args.out.mkdir(parents=True, exist_ok=True)
    table = []
    for method in grid["methods"]:
        method = method if isinstance(method, dict) else {"name": method}
        if method.get("kind") not in ("td3", "farzi"):
            continue
        name = method["name"]
        dataset = grid["datasets"][0]["name"]  # (summary folders: DATASET-METHOD-nN-LL-KEY)
        runs = [p for p in (args.results / "summaries").glob("*/metrics.json")
                if re.fullmatch(rf"{re.escape(dataset)}-{re.escape(name)}-n\d+-L\d+-[0-9a-f]{{8}}", p.parent.name)]
        if not runs:
            continue
        run = runs[0].parent
        metrics = json.loads(runs[0].read_text())
        for file in ("metrics.json", "config.yaml", "steps.jsonl", "benchmark_timing.json"):
            if (run / file).is_file():
                (args.out / "summaries" / run.name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run / file, args.out / "summaries" / run.name / file)
        select = metrics.get("select_metric") or yaml.safe_load((run / "config.yaml").read_text())["select_metric"]
        protocol, metric = select.split(":")
        curve = [h["valid"][protocol][metric] for h in metrics.get("history", [])]
        tests = {m: [float(r[m]) for r in rows if r["method"] == name and r["status"] == "done" and r[m]]
                 for m in METRICS}
        timing = json.loads((run / "benchmark_timing.json").read_text()) if (run / "benchmark_timing.json").is_file() else {}
        entry = {
            "method": name, "settings": _settings(method), "status": metrics.get("status"),
            "budget_s": metrics.get("time_budget_seconds"), "clock": metrics.get("time_budget_clock", "wall"),
            "budget_used_s": metrics.get("seconds"), "wall_s": timing.get("distill_seconds"),
            "outer_steps": metrics.get("outer_steps"), "s_per_step": metrics.get("median_seconds_per_step"),
            "best_epoch": metrics.get("best_epoch"), "valid_best": metrics.get("best_value"),
            "valid_curve": " ".join(f"{v:.4f}" for v in curve),
        }
        for m in METRICS:
            values = tests[m]
            if values:
                entry[f"test {m}"] = statistics.fmean(values)
                entry[f"test {m} std"] = statistics.pstdev(values)
                entry[f"{m} % of Whole"] = 100 * statistics.fmean(values) / whole[m]
        table.append(entry)
    keys = sorted({k for e in table for k in e}, key=lambda k: list(table[0]).index(k) if k in table[0] else 99)
    with (args.out / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)
    lines = [f"# Diagnosis: {args.results.name} (validation {select}; test = 3 learner seeds, shared-item-factor)", "",
             f"Whole: full NDCG@10 {whole['full:NDCG@10']:.4f}, uni100 NDCG@10 {whole['uni100:NDCG@10']:.4f}.", "",
             "| method | settings | outer steps | s/step | budget used (clock) | wall s | best epoch | valid best | "
             "validation per epoch | test full NDCG@10 (% Whole) | test uni100 NDCG@10 (% Whole) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        def cell(m: str) -> str:
            if f"test {m}" not in e:
                return "pending"
            return f"{e[f'test {m}']:.4f} ± {e[f'test {m} std']:.4f} ({e[f'{m} % of Whole']:.0f} %)"
        used = f"{e['budget_used_s']:.0f} s ({e['clock']})" if e["budget_used_s"] is not None else ""
        wall = f"{e['wall_s']:.0f}" if e.get("wall_s") else ""
        lines.append(f"| {e['method']} | {e['settings']} | {e['outer_steps']} | {e['s_per_step'] or 0:.2f} | {used} | {wall} | "
                     f"{e['best_epoch']} | {e['valid_best'] or 0:.4f} | {e['valid_curve']} | {cell(METRICS[0])} | "
                     f"{cell(METRICS[1])} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
