"""The results table: one flat row per finished cell of the current grid, written atomically as
``RESULTS/results.csv`` and ``RESULTS/results.json`` (which also records the teachers' training times and the
resolved config); ``td3rec report RESULTS`` reads it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from td3rec.config import to_dict
from td3rec.experiments.benchmark.compute import DatasetContext, read_json
from td3rec.experiments.benchmark.config import BenchmarkConfig
from td3rec.experiments.benchmark.plan import Cell
from td3rec.utils.atomic import write_json, write_text

RESULTS_CSV, RESULTS_JSON = "results.csv", "results.json"

def flat_row(record: dict, metric_keys: list[str]) -> dict:
    """A cell record as one flat table row (metrics as ``PROTOCOL:METRIC`` columns)."""
    row = {k: record.get(k) for k in ("dataset", "method", "kind", "family", "n", "seq_len", "arch", "init", "seed")}
    distill = (record.get("settings") or {}).get("distill")
    row["distill_seed"] = distill.get("seed") if isinstance(distill, dict) else None  # (distilled data only)
    row.update({k: record.get(k) for k in ("status", "reason")})
    test = record.get("test") or {}
    for key in metric_keys:
        protocol, _, metric = key.partition(":")
        row[key] = test.get(protocol, {}).get(metric)
    for k in ("train_seconds", "data_seconds", "summary_parameters", "summary_parameters_with_item_factor",
              "data_interactions", "real_interactions", "size_fraction", "key"):
        row[k] = record.get(k)
    return row


def metric_keys(config: BenchmarkConfig) -> list[str]:
    return [f"{p}:{name}@{k}" for p in config.eval.protocols for name in ("HR", "NDCG", "MRR") for k in config.eval.ks]


def write_table(results: Path, config: BenchmarkConfig, cells: list[Cell], records: dict[str, dict],
                 contexts: dict[str, DatasetContext], status: str) -> list[dict]:
    keys = metric_keys(config)
    done = [records[c.key] for c in cells if c.key in records]
    rows = [flat_row(r, keys) for r in done]
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else list(flat_row({}, keys))
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    write_text(results / RESULTS_CSV, buffer.getvalue())
    teachers = {}
    for name, ctx in contexts.items():
        for arch, seconds in ctx.teacher_seconds.items():
            teachers[f"{name}/{arch}"] = {"dataset": name, "arch": arch, "train_seconds": seconds,
                                          "run_dir": str(ctx.teacher_dir(arch))}
    previous = read_json(results / RESULTS_JSON).get("teachers", {})
    write_json(results / RESULTS_JSON, {
        "status": status,
        "cells_total": len(cells), "cells_finished": len(done), "metrics": keys,
        "teachers": {**previous, **teachers}, "config": to_dict(config), "rows": rows,
    })
    return rows
