"""Cut a ``td3rec train`` run at epoch E: the finished run that ``--epochs E`` would have produced.

Full-data training uses a constant learning rate and saves a checkpoint every epoch, so the first E epochs of
a longer run (same data, settings and seed) are exactly the epochs of a run with ``epochs: E``; that run's
``best.pt`` is the best of those epochs' checkpoints. This script writes such a run folder from a longer
(finished or still running) one, with its test metrics computed from the chosen ``best.pt`` — so a benchmark
whose teacher is ``epochs: E`` can use it instead of training again. ``benchmark_timing.json`` gets the
summed training seconds of the E epochs (as measured in the long run).

    python benchmarks/cut_teacher.py runs/teacher-beauty 30 runs/amazon/beauty/teachers/beauty-sasrec-KEY \\
        --dataset amazon-beauty
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from td3rec.config import from_dict
from td3rec.data import load_dataset
from td3rec.data.sequences import leave_one_out
from td3rec.evaluation.evaluator import evaluate
from td3rec.training.checkpoint import load_checkpoint
from td3rec.training.config import TrainConfig
from td3rec.utils.atomic import write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the longer td3rec train run")
    parser.add_argument("epochs", type=int, help="E: the epochs to keep")
    parser.add_argument("out", type=Path, help="the folder to write (must not exist)")
    parser.add_argument("--dataset", required=True, help="the run's dataset (name or file)")
    args = parser.parse_args()
    import json

    metrics = json.loads((args.run / "metrics.json").read_text())
    history = metrics["history"][: args.epochs]
    if len(history) < args.epochs:
        raise SystemExit(f"{args.run} has only {len(history)} epochs")
    config = from_dict(TrainConfig, yaml.safe_load((args.run / "config.yaml").read_text()))
    config.epochs = args.epochs
    metric, _, name = config.valid_metric.partition(":")
    values = [row["valid"][metric][name] for row in history]
    best = values.index(max(values)) + 1  # the trainer keeps the first epoch that reaches the best value
    if args.out.exists():
        raise SystemExit(f"{args.out} exists")
    (args.out / "checkpoints").mkdir(parents=True)
    for epoch in range(1, args.epochs + 1):
        shutil.copy2(args.run / "checkpoints" / f"epoch_{epoch:03d}.pt", args.out / "checkpoints")
    shutil.copy2(args.run / "checkpoints" / f"epoch_{best:03d}.pt", args.out / "best.pt")
    for name_ in ("dataset.json", "run.json"):
        if (args.run / name_).is_file():
            shutil.copy2(args.run / name_, args.out / name_)
    from td3rec.config import dump_yaml

    write_text(args.out / "config.yaml", dump_yaml(config))
    dataset = load_dataset(args.dataset)
    model, meta = load_checkpoint(args.out / "best.pt")
    test = evaluate(model.eval(), leave_one_out(dataset), "test", config.max_len, config.eval, "cpu")
    seconds = sorted(row["seconds"] for row in history)
    write_json(args.out / "metrics.json", {
        "status": "finished", "model": config.model, "dataset": dataset.name, "fingerprint": meta["fingerprint"],
        "best_epoch": best, "epochs_run": args.epochs, "valid_metric": config.valid_metric,
        "valid": history[best - 1]["valid"], "test": test, "median_seconds_per_epoch": seconds[len(seconds) // 2],
        "skipped_steps": 0, "history": history, "cut_from": str(args.run),
    })
    write_json(args.out / "benchmark_timing.json", {"train_seconds": sum(row["seconds"] for row in history),
                                                     "cut_from": str(args.run)})
    print(f"{args.out}: epochs 1..{args.epochs} of {args.run}, best epoch {best} "
          f"(valid {config.valid_metric} {history[best - 1]['valid'][metric][name]:.5f}), test {test['full']}")


if __name__ == "__main__":
    main()
