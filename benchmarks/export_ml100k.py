"""Hard exports against the soft summary on ML-100k: SASRec learners trained on the soft TD3 summary, on its
argmax export and on sampled exports (``td3rec export --mode argmax|sample``), read back from the exported
RecBole files exactly as another library would get them; test HR@10 / NDCG@10, full ranking and uni100.

Run (from the repository root, with the real data folder and a TD3 summary of ML-100k with a 32-wide V, e.g.
the grid's or ``benchmarks/distill_ml100k.py``'s):

    TD3REC_DATA_DIR=../shared/data python benchmarks/export_ml100k.py --summary SUMMARY.safetensors

Writes ``benchmarks/results/export_ml100k.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
from pathlib import Path

import torch

from td3rec.data import load_dataset
from td3rec.evaluation.suite import DataSpec, SuiteConfig, run_suite
from td3rec.summary.export import export_summary
from td3rec.summary.io import load_summary
from td3rec.utils.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", required=True, help="TD3 summary of ml-100k (.safetensors)")
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5],
                        help="sampled exports with K draws per synthetic sequence (default 1 and 5)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--name", default="export_ml100k")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    dataset = load_dataset("ml-100k")
    max_len = int(load_summary(args.summary)[0]["T"].shape[0])  # TD3: T is L x d2
    specs = [DataSpec("summary", path=args.summary)]
    exports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, k in [("argmax", 1)] + [("sample", k) for k in args.samples]:
            label = "argmax" if mode == "argmax" else f"sample-K{k}"
            path = Path(tmp) / f"{label}.inter"
            seqs = export_summary(args.summary, path, fmt="recbole", mode=mode, samples=k, seed=0)
            exports[label] = {"sequences": len(seqs), "interactions": seqs.n_interactions,
                              "distinct_items": int(len(set(seqs.items.ravel().tolist())))}
            specs.append(DataSpec("sequences", path=str(path), fmt="atomic"))
        suite = SuiteConfig(archs=("sasrec",), inits=("shared-item-factor", "scratch"), seeds=args.seeds,
                            max_len=max_len)
        rows = run_suite(dataset, specs, suite, torch.device("cpu"))
    out = {"command": " ".join(["python"] + sys.argv), "torch": torch.__version__, "platform": platform.platform(),
           "threads": torch.get_num_threads(), "summary": args.summary, "exports": exports, "rows": rows}
    write_json(RESULTS / f"{args.name}.json", out)
    text = markdown(out)
    write_text(RESULTS / f"{args.name}.md", text)
    print(text)


def markdown(out: dict) -> str:
    lines = ["# Soft summary vs hard exports on ML-100k (SASRec learners)", "",
             f"Command: `{out['command']}`  ", f"torch {out['torch']}, {out['threads']} threads, {out['platform']}",
             "", f"Summary: `{out['summary']}`. Exports (RecBole `.inter`, read back through td3rec's reader): " +
             "; ".join(f"{k}: {v['sequences']} sequences, {v['interactions']} interactions, {v['distinct_items']} "
                       f"distinct items" for k, v in out["exports"].items()) + ".", "",
             "Test users, learners trained 200 steps (reference schedule), mean ± std over seeds:", "",
             "| data | init | full HR@10 | full NDCG@10 | uni100 HR@10 | uni100 NDCG@10 | train s |",
             "|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        cells = [f"{r['mean'][p][m]:.4f} ± {r['std'][p][m]:.4f}" for p in ("full", "uni100") for m in ("HR@10", "NDCG@10")]
        secs = sum(r["train_seconds"]) / len(r["train_seconds"])
        lines.append(f"| {r['data']} | {r['init'].split(' ')[0]} | " + " | ".join(cells) + f" | {secs:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
