"""Probe how a summary's learners use it: what full-ranking quality is lost where, on the test users.

For one summary (TD3 or Farzi file) it trains SASRec learners under the shared-item-factor protocol — as
`td3rec evaluate` does — and, as diagnostics that are *not* evaluation protocols, the same learners trained
longer (is the summary under-used?) and with their item embedding kept at V (how much of the full-ranking gap
comes from the item embeddings of the items the summary never shows drifting during training?). It also reports
how much of the catalogue the summary covers: the share of items, and of the test users' targets, that hold at
least ``--min-mass`` of the probability of some synthetic position.

    OMP_NUM_THREADS=1 python benchmarks/diagnosis/learner_probe.py SUMMARY --dataset amazon-beauty \\
        --teacher RUN_DIR --steps 200 --steps 1000 --json OUT.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from td3rec.data import load_dataset
from td3rec.data.loading import default_preprocess_config
from td3rec.data.sequences import leave_one_out
from td3rec.evaluation.evaluator import EvalConfig, evaluate
from td3rec.evaluation.initialisation import init_learner
from td3rec.evaluation.learner_training import LearnerTrainingConfig, train_learner
from td3rec.evaluation.suite import summary_source
from td3rec.training.checkpoint import load_checkpoint


def coverage(source, n_items: int, min_mass: float) -> torch.Tensor:
    """Whether each item (0-based rows) holds at least ``min_mass`` of some position's distribution."""
    covered = torch.zeros(n_items, dtype=torch.bool)
    W, V = source.W.detach(), source.V.detach()
    for a in range(W.shape[0]):
        probs = torch.zeros(W.shape[1], n_items)
        if source._support is not None:  # (the summary's own top-k supports)
            support = source._support[a]
            probs.scatter_(1, support, torch.softmax(torch.einsum("ld,lkd->lk", W[a], V[support]), dim=-1))
        else:
            probs = torch.softmax(W[a] @ V.T, dim=-1)
        covered |= (probs >= min_mass).any(0)
    return covered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summary")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--top-items", type=int, default=0)
    parser.add_argument("--teacher", required=True, help="the teacher run (its learner options and max_len)")
    parser.add_argument("--steps", type=int, action="append", help="learner training steps (repeatable)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--min-mass", type=float, default=0.01)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = dataclasses.replace(default_preprocess_config(args.dataset), top_items=args.top_items)
    dataset = load_dataset(args.dataset, config=config)
    split = leave_one_out(dataset)
    teacher, _ = load_checkpoint(Path(args.teacher) / "best.pt")
    options = dataclasses.asdict(teacher.config)
    source = summary_source(args.summary, dataset, torch.device("cpu"))
    covered = coverage(source, dataset.n_items, args.min_mass)
    targets = torch.tensor([int(seq[-1]) - 1 for seq in dataset.sequences])
    eval_config = EvalConfig(protocols=["full", "uni100"])
    rows = []
    for steps in args.steps or [200]:
        for frozen in (False, True):
            runs = []
            for seed in range(args.seeds):
                model = init_learner("sasrec", "shared-item-factor", dataset.n_items, teacher.max_len, seed,
                                     item_factor=source.V, model_options=options)
                model.item_embedding.weight.requires_grad_(not frozen)
                start = time.perf_counter()
                train_learner(model, source, LearnerTrainingConfig(steps=steps),
                              generator=torch.Generator().manual_seed(10_000 + seed))
                seconds = time.perf_counter() - start
                drift = (model.item_vectors().detach() - source.V).norm(dim=1)
                result = evaluate(model, split, "test", teacher.max_len, eval_config, torch.device("cpu"))
                runs.append({"full_ndcg10": result["full"]["NDCG@10"], "uni100_ndcg10": result["uni100"]["NDCG@10"],
                             "seconds": seconds, "drift_covered": float(drift[covered].mean()),
                             "drift_uncovered": float(drift[~covered].mean()) if (~covered).any() else 0.0})
            mean = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
            rows.append({"steps": steps, "item_embedding": "frozen at V" if frozen else "trained (protocol)", **mean})
            print(f"steps {steps:5d}  embedding {rows[-1]['item_embedding']:20s}  full NDCG@10 "
                  f"{mean['full_ndcg10']:.4f}  uni100 NDCG@10 {mean['uni100_ndcg10']:.4f}  drift covered "
                  f"{mean['drift_covered']:.3f} / uncovered {mean['drift_uncovered']:.3f}", flush=True)
    facts = {"summary": args.summary, "items": dataset.n_items, "covered_items": int(covered.sum()),
             "test_targets_covered": float(covered[targets].float().mean()), "min_mass": args.min_mass,
             "rows": rows}
    print(f"covered items {facts['covered_items']} of {dataset.n_items}; test targets covered "
          f"{facts['test_targets_covered']:.1%}")
    if args.json:
        args.json.write_text(json.dumps(facts, indent=1))


if __name__ == "__main__":
    main()
