"""Full-data benchmark: every learner on real datasets, test HR@10 / NDCG@10 (full ranking and uni100),
mean ± std over seeds, epochs to converge and seconds per epoch.

Run (from the repository root, with the real data folder):

    TD3REC_DATA_DIR=../shared/data python benchmarks/full_data.py --datasets ml-100k amazon-beauty --seeds 3

Writes ``benchmarks/results/full_data.json`` and ``benchmarks/results/full_data.md``.

The ``whole`` cells of the comparison grid (``benchmarks/grid.yaml``) are the same trainings (default learners,
window examples, early stopping on full NDCG@10, patience 10); to build the table from a grid's finished cells
instead of training again:

    python benchmarks/full_data.py --from-benchmark benchmarks/results/grid
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from td3rec.data import load_dataset
from td3rec.models.registry import MODEL_NAMES
from td3rec.training.config import TrainConfig
from td3rec.training.trainer import train_full_data
from td3rec.utils.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "amazon-beauty"])
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--valid-metric", default="full:NDCG@10")
    parser.add_argument("--mode", default="window", choices=["prefix", "window"], help="training examples")
    parser.add_argument("--set", action="append", default=[], metavar="DATASET:MODEL:KEY=VALUE",
                        help="per-dataset model option, e.g. amazon-beauty:sasrec:hidden_size=64")
    parser.add_argument("--name", default="full_data", help="results file stem")
    parser.add_argument("--from-benchmark", metavar="RESULTS_DIR",
                        help="build the table from the finished `whole` cells of a `td3rec benchmark` results folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.from_benchmark:
        from_benchmark(Path(args.from_benchmark), args.name)
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))

    options: dict[tuple[str, str], dict] = {}
    for text in args.set:
        ds, model, kv = text.split(":", 2)
        key, value = kv.split("=", 1)
        options.setdefault((ds, model), {})[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value

    meta = {"command": " ".join(["python"] + sys.argv), "torch": torch.__version__, "platform": platform.platform(),
            "threads": torch.get_num_threads(), "valid_metric": args.valid_metric, "patience": args.patience,
            "mode": args.mode}
    rows = []
    for name in args.datasets:
        dataset = load_dataset(name)
        for model in args.models:
            runs = []
            for seed in range(args.seeds):
                cfg = TrainConfig(model=model, seed=seed, epochs=args.epochs, patience=args.patience,
                                  valid_metric=args.valid_metric, keep_trajectory=False, device="cpu", mode=args.mode,
                                  model_options=options.get((name, model), {}))
                start = time.perf_counter()
                res = train_full_data(dataset, cfg, progress=False)
                runs.append({"seed": seed, "test": res.test, "best_epoch": res.best_epoch,
                             "epochs_run": len(res.history), "seconds_per_epoch": res.seconds_per_epoch,
                             "seconds": time.perf_counter() - start})
                print(f"{name} {model} seed {seed}: full HR@10 {res.test['full']['HR@10']:.4f} NDCG@10 "
                      f"{res.test['full']['NDCG@10']:.4f}, uni100 HR@10 {res.test['uni100']['HR@10']:.4f} NDCG@10 "
                      f"{res.test['uni100']['NDCG@10']:.4f}, best epoch {res.best_epoch}", flush=True)
                # after every seed, so an interrupted run keeps what finished
                _write(rows + [_row(name, model, dataset, runs, options)], meta, args.name)
            rows.append(_row(name, model, dataset, runs, options))
            _write(rows, meta, args.name)
    print(_markdown(rows, meta))


def from_benchmark(results: Path, name: str) -> None:
    """The table of the ``whole`` cells finished in a benchmark results folder (one row per dataset × model)."""
    from td3rec.experiments.benchmark.runner import CELLS_DIR, read_cell

    groups: dict[tuple[str, str], list[dict]] = {}
    settings: dict[tuple[str, str], dict] = {}
    for path in sorted((results / CELLS_DIR).glob("*.json")):
        record = read_cell(path)
        if record is None or record.get("family") != "whole" or record.get("status") != "done":
            continue
        key = (record["dataset"], record["arch"])
        groups.setdefault(key, []).append({
            "seed": record["seed"], "test": record["test"], "best_epoch": record["best_epoch"],
            "epochs_run": record["epochs_run"], "seconds": record["train_seconds"],
            "seconds_per_epoch": record.get("seconds_per_epoch", record["train_seconds"] / record["epochs_run"])})
        settings[key] = record["settings"]["whole"]
    if not groups:
        raise SystemExit(f"no finished whole cells in {results / CELLS_DIR}")
    rows = []
    for (ds, model), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        rows.append({"dataset": ds, "model": model, "model_options": settings[(ds, model)]["model_options"],
                     "runs": runs, **_aggregate(runs)})
    any_settings = next(iter(settings.values()))
    meta = {"command": " ".join(["python"] + sys.argv),
            "note": f"Rows built from the finished `whole` cells in `{results}` (computed by `td3rec benchmark "
                    "benchmarks/grid.yaml`, one thread per process; see that folder's README for the runs).",
            "torch": torch.__version__, "platform": platform.platform(), "threads": 1,
            "valid_metric": any_settings["valid_metric"], "patience": any_settings["patience"],
            "mode": any_settings["mode"]}
    _write(rows, meta, name)
    print(_markdown(rows, meta))


def _row(name: str, model: str, dataset, runs: list[dict], options: dict) -> dict:
    """One result row: a dataset × learner with its per-seed runs and their aggregate."""
    return {"dataset": name, "model": model, "model_options": options.get((name, model), {}),
            "users": dataset.n_users, "items": dataset.n_items, "interactions": dataset.n_interactions,
            "preprocessing": dataset.preprocessing, "runs": runs, **_aggregate(runs)}


def _write(rows: list[dict], meta: dict, name: str) -> None:
    write_json(RESULTS / f"{name}.json", {"meta": meta, "rows": rows})
    write_text(RESULTS / f"{name}.md", _markdown(rows, meta))


def _aggregate(runs: list[dict]) -> dict:
    out = {}
    for protocol in ("full", "uni100"):
        for metric in ("HR@10", "NDCG@10"):
            values = [r["test"][protocol][metric] for r in runs]
            out[f"{protocol}:{metric}"] = (statistics.mean(values), statistics.pstdev(values))
    out["best_epoch_median"] = statistics.median(r["best_epoch"] for r in runs)
    out["seconds_per_epoch_median"] = statistics.median(r["seconds_per_epoch"] for r in runs)
    return out


def _markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# Full-data learners (test users, leave-one-out)", "",
             f"Command: `{meta['command']}`  ", f"torch {meta['torch']}, {meta['threads']} threads, {meta['platform']}; "
             f"{meta['mode']} training examples; early stopping on {meta['valid_metric']} (patience {meta['patience']}).", "",
             "| dataset | model | seeds | full HR@10 | full NDCG@10 | uni100 HR@10 | uni100 NDCG@10 | best epoch (median) | s/epoch (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k][0]:.4f} ± {r[k][1]:.4f}" for k in ("full:HR@10", "full:NDCG@10", "uni100:HR@10", "uni100:NDCG@10")]
        lines.append(f"| {r['dataset']} | {r['model']} | {len(r['runs'])} | " + " | ".join(cells) +
                     f" | {r['best_epoch_median']:.0f} | {r['seconds_per_epoch_median']:.1f} |")
    lines.append("")
    lines.append("Mean ± population std over the seeds of each row.")
    if meta.get("note"):
        lines += ["", meta["note"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
