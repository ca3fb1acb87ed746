"""``td3rec train``: train a learner on the full data (the baseline and the distillation teacher)."""

from __future__ import annotations

import argparse
import logging

from td3rec.commands._common import (
    add_config_arguments,
    add_output_arguments,
    config_from_args,
    default_output_dir,
    prepare_output_dir,
)
from td3rec.commands._dataset_args import add_dataset_arguments, dataset_from_args, require_dataset
from td3rec.commands._resume import add_resume_argument, claim_run, record_run, resume_settings
from td3rec.training.config import TrainConfig
from td3rec.training.trainer import train_full_data
from td3rec.utils.memory import check_learner_memory

NAME = "train"
HELP = "train a learner on the full data with early stopping; keeps a checkpoint per epoch"

log = logging.getLogger(__name__)

#: command-line flags that are shortcuts for config keys
_SHORTCUTS = {
    "model": "model", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "max_len": "max_len",
    "seed": "seed", "mode": "mode", "device": "device", "valid_metric": "valid_metric", "patience": "patience",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser, positional=False, required=False)
    parser.add_argument("--model", help="sasrec (default), gru4rec, narm or bert4rec")
    parser.add_argument("--mode", choices=["prefix", "window"],
                        help="training examples: prefix (every prefix, reference; default) or window (fast)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 200)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 2048)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 0.001)")
    parser.add_argument("--max-len", type=int, help="maximum sequence length L (default 50)")
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 10)")
    parser.add_argument("--valid-metric", help="early-stopping metric PROTOCOL:METRIC (default full:NDCG@10)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    add_config_arguments(parser)
    add_output_arguments(parser, "runs/train-DATASET-MODEL-seedS")
    add_resume_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.resume:
        config, out = resume_settings(TrainConfig, args, _SHORTCUTS)
    else:
        require_dataset(args)
        config = config_from_args(TrainConfig, args, _SHORTCUTS)
        out_path = default_output_dir(args, "runs/train-{dataset}-{model}-seed{seed}", model=config.model,
                                      seed=config.seed)
    dataset = dataset_from_args(args)
    check_learner_memory("training", config.model, dataset.n_items, config.max_len, config.model_options,
                         dataset.n_interactions + dataset.n_users)
    if args.resume:
        claim_run(out)
    else:
        out = prepare_output_dir(out_path, args)
        record_run(out, args)
    result = train_full_data(dataset, config, run_dir=out, progress=not args.no_progress, resume=bool(args.resume))
    print(f"best epoch {result.best_epoch} of {len(result.history)}; median {result.seconds_per_epoch:.1f} s/epoch")
    print(format_metrics_table({"valid": result.valid, "test": result.test}))
    print(f"run folder: {out}")
    return 0


def format_metrics_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """A compact text table: one line per (split, protocol), columns HR/NDCG/MRR at each K."""
    lines = []
    header = None
    for split_name, by_protocol in rows.items():
        for protocol, metrics in by_protocol.items():
            if header is None:
                header = list(metrics)
                lines.append(f"{'split':<6} {'protocol':<8} " + " ".join(f"{m:>8}" for m in header))
            lines.append(f"{split_name:<6} {protocol:<8} " + " ".join(f"{metrics[m]:>8.4f}" for m in header))
    return "\n".join(lines)
