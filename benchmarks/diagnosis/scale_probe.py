"""How much of a summary's quality depends on the scale of its item factor V, the learners' starting item
embedding under the shared-item-factor protocol: the summary's V is multiplied by c and its queries W divided by
c (its distributions do not change), and SASRec learners are trained and tested as `td3rec evaluate` does. The
same V (times c) is given to a real subset for comparison.

    OMP_NUM_THREADS=1 python benchmarks/diagnosis/scale_probe.py SUMMARY --dataset amazon-beauty \\
        --teacher RUN_DIR --scale 1 --scale 4 --scale 16 --subset longest --json OUT.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from td3rec.data import load_dataset
from td3rec.data.sequences import leave_one_out
from td3rec.evaluation.evaluator import EvalConfig
from td3rec.evaluation.learner_training import LearnerTrainingConfig
from td3rec.evaluation.summary_eval import evaluate_sources
from td3rec.summary.factors import load_summary_factors
from td3rec.summary.real_subset import real_subset
from td3rec.training.checkpoint import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summary")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--teacher", required=True, help="the teacher run (learner options)")
    parser.add_argument("--scale", type=float, action="append", required=True)
    parser.add_argument("--subset", help="also a real subset of the summary's size with the same V (e.g. longest)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    split = leave_one_out(dataset)
    teacher, _ = load_checkpoint(Path(args.teacher) / "best.pt")
    options = dataclasses.asdict(teacher.config)
    eval_config = EvalConfig(protocols=["full", "uni100"])
    rows = []
    for scale in args.scale:
        source = load_summary_factors(args.summary, expected_fingerprint=dataset.fingerprint()).source(
            torch.device("cpu"), None)
        n, L = source.W.shape[:2]
        sources = {"summary": source}
        if args.subset:
            sources[f"{args.subset}-{n}"] = real_subset(split, args.subset, n, L, seed=0)
        for name, data in sources.items():
            if name == "summary":
                data.W, data.V = data.W / scale, data.V * scale  # (same logits, so the same top-k supports)
            else:
                data.V = source.V
            result = evaluate_sources(data, split, "sasrec", "shared-item-factor", range(args.seeds), "test",
                                      teacher.max_len, eval_config, torch.device("cpu"),
                                      LearnerTrainingConfig(steps=200), model_options=options)
            rows.append({"data": name, "scale": scale, "full_ndcg10": result["mean"]["full"]["NDCG@10"],
                         "uni100_ndcg10": result["mean"]["uni100"]["NDCG@10"]})
            print(f"{name:12s} scale {scale:5.1f}  full NDCG@10 {rows[-1]['full_ndcg10']:.4f}  "
                  f"uni100 NDCG@10 {rows[-1]['uni100_ndcg10']:.4f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"summary": args.summary, "seeds": args.seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
