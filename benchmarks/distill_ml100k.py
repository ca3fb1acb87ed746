"""TD3 on ML-100k at the reference settings, judged under the three initialisation protocols.

Distills (or reuses a finished distillation run), then trains learners on the TD3 summary, Random-30 and
Longest-30 (3 seeds each, the reference schedule) and tests them with full ranking and uni100; prints a table
and writes ``benchmarks/results/distill_ml100k.json`` and ``.md``.

    TD3REC_DATA_DIR=../shared/data python benchmarks/distill_ml100k.py \
        --teacher runs/ml100k-sasrec-prefix --run runs/ml100k-td3 --epochs 25

``--teacher`` is a ``td3rec train --dataset ml-100k --model sasrec`` run (prefix mode, as the reference).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path

import torch

from td3rec.config import load_config
from td3rec.data import load_dataset
from td3rec.distill.config import DistillConfig
from td3rec.distill.distiller import Distiller, peak_rss_gib
from td3rec.evaluation.suite import DataSpec, SuiteConfig, run_suite
from td3rec.training.checkpoint import load_checkpoint
from td3rec.utils.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"
REFERENCE = {"TD3 (reference code, reference protocol)": {"HR@10": 0.620, "NDCG@10": 0.349},
             "full-data SASRec (reference code)": {"HR@10": 0.641, "NDCG@10": 0.372}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="td3rec train run folder (SASRec on ml-100k)")
    parser.add_argument("--run", required=True, help="distillation run folder (reused when finished)")
    parser.add_argument("--epochs", type=int, default=25, help="outer epochs (reference comparison: 25)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="DistillConfig override key=value")
    parser.add_argument("--name", default="distill_ml100k")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    dataset = load_dataset("ml-100k")
    run = Path(args.run)
    metrics_file = run / "metrics.json"
    finished = metrics_file.is_file() and json.loads(metrics_file.read_text()).get("status") == "finished"
    if not finished:
        config = load_config(DistillConfig, None, [f"epochs={args.epochs}", "device=cpu", *args.set])
        Distiller(dataset, config, run_dir=run, teacher_run=args.teacher, progress=False).run()
    distill_metrics = json.loads(metrics_file.read_text())

    teacher, meta = load_checkpoint(Path(args.teacher) / "best.pt")
    teacher_metrics = json.loads((Path(args.teacher) / "metrics.json").read_text())
    suite = SuiteConfig(archs=("sasrec",), seeds=args.seeds, max_len=teacher.max_len)
    specs = [DataSpec("summary", path=str(run / "summary_best.safetensors")), DataSpec("random", n=30),
             DataSpec("longest", n=30)]
    rows = run_suite(dataset, specs, suite, torch.device("cpu"), {"sasrec": teacher.eval()})
    whole = {"data": "whole (teacher run, 1 seed)", "init": "scratch (full training, early stopping)",
             "arch": "sasrec", "mean": teacher_metrics["test"], "std": None}
    out = {
        "command": " ".join(["python"] + sys.argv), "torch": torch.__version__, "platform": platform.platform(),
        "threads": torch.get_num_threads(), "distill": {k: v for k, v in distill_metrics.items() if k != "history"},
        "validation_history": distill_metrics["history"], "whole": whole, "rows": rows,
        "reference_code": REFERENCE, "peak_rss_gib_this_process": peak_rss_gib(),
    }
    write_json(RESULTS / f"{args.name}.json", out)
    text = markdown(out)
    write_text(RESULTS / f"{args.name}.md", text)
    print(text)


def _cell(row: dict, protocol: str, metric: str) -> str:
    m = row["mean"][protocol][metric]
    s = row["std"][protocol][metric] if row.get("std") else None
    return f"{m:.4f}" + (f" ± {s:.4f}" if s is not None else "")


def markdown(out: dict) -> str:
    d = out["distill"]
    lines = [
        "# TD3 on ML-100k (single-pass 5-core), reference settings", "",
        f"Command: `{out['command']}`  ",
        f"torch {out['torch']}, {out['threads']} threads, {out['platform']}", "",
        f"Distillation: {d.get('outer_steps')} outer steps, median {d.get('median_seconds_per_step', 0):.2f} s per outer "
        f"step, median {d.get('median_seconds_per_epoch', 0):.0f} s per outer epoch (training part), peak RSS "
        f"{d.get('peak_rss_gib', float('nan')):.2f} GiB; best epoch {d.get('best_epoch')} by {d.get('select_metric')}; "
        f"summary {d.get('summary_parameters')} learned parameters ({d.get('summary_parameters_with_item_factor')} "
        f"with V) for {d.get('real_interactions')} real interactions.", "",
        "Test users, 3 learners per cell (mean ± std), 200 steps on the data:", "",
        "| data | init | full HR@10 | full NDCG@10 | uni100 HR@10 | uni100 NDCG@10 |", "|---|---|---|---|---|---|",
    ]
    for r in out["rows"] + [out["whole"]]:
        cells = [_cell(r, p, m) for p in ("full", "uni100") for m in ("HR@10", "NDCG@10")]
        lines.append(f"| {r['data']} | {r['init'].split(' ')[0]} | " + " | ".join(cells) + " |")
    lines += ["", "Reference implementation on this kind of machine (uni100 test): TD3 HR@10 0.620 ± 0.003, "
              "NDCG@10 0.349 ± 0.005 (reference protocol); full-data SASRec HR@10 0.641, NDCG@10 0.372; "
              "7.8 s per outer step, 3.7 GiB peak.", "",
              "Validation during distillation (" + d.get("select_metric", "") + ", reference-init learner):", "",
              "| epoch | " + " | ".join(f"{h['epoch']}" for h in out["validation_history"]) + " |",
              "|---|" + "---|" * len(out["validation_history"]),
              "| uni100 NDCG@10 | " + " | ".join(f"{h['valid']['uni100']['NDCG@10']:.3f}" for h in out["validation_history"]) + " |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
