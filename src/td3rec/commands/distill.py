"""``td3rec distill``: distill a dataset into a TD3 synthetic sequence summary."""

from __future__ import annotations

import argparse

from td3rec.commands._common import (
    add_config_arguments,
    add_output_arguments,
    config_from_args,
    default_output_dir,
    prepare_output_dir,
)
from td3rec.commands._dataset_args import add_dataset_arguments, dataset_from_args, require_dataset
from td3rec.commands._resume import add_resume_argument, record_run, resume_settings
from td3rec.distill.config import DistillConfig
from td3rec.distill.distiller import Distiller
from td3rec.distill.teacher import load_teacher
from td3rec.utils.device import resolve_device

NAME = "distill"
HELP = "distill a dataset into a TD3 synthetic sequence summary (reference ML-100k settings by default)"

#: command-line flags that are shortcuts for config keys
_SHORTCUTS = {
    "epochs": "epochs", "max_steps": "max_steps", "n_sequences": "n_sequences", "seq_len": "seq_len",
    "d1": "d1", "d2": "d2", "inner_steps": "inner_steps", "window": "window", "real_batch_size": "real_batch_size",
    "feature_weight": "feature_weight", "outer_lr": "outer_lr", "seed": "seed", "device": "device",
    "eval_init": "eval_init", "model": "model",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser, positional=False, required=False)
    parser.add_argument("--teacher", metavar="RUN_DIR",
                        help="folder of a `td3rec train` run to use as teacher (default: train one on the fly)")
    parser.add_argument("--model", help="distillation architecture (default sasrec)")
    parser.add_argument("--epochs", type=int, help="outer epochs (default 30)")
    parser.add_argument("--max-steps", type=int, help="stop after this many outer steps (default: no limit)")
    parser.add_argument("--n-sequences", type=int, help="synthetic sequences n (default 30)")
    parser.add_argument("--seq-len", type=int, help="synthetic sequence length (default 50)")
    parser.add_argument("--d1", type=int, help="user-factor rank (default 8)")
    parser.add_argument("--d2", type=int, help="temporal-factor rank (default 8)")
    parser.add_argument("--inner-steps", type=int, help="maximum inner unroll (default 200)")
    parser.add_argument("--window", type=int, help="RaT-BPTT window (default 40)")
    parser.add_argument("--real-batch-size", type=int, help="real examples per outer step (default 4096)")
    parser.add_argument("--feature-weight", type=float, help="λ of the feature alignment (default 1.0)")
    parser.add_argument("--outer-lr", type=float, help="outer Adam learning rate (default 0.03)")
    parser.add_argument("--eval-init", help="initialisation of validation learners (default reference)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    add_config_arguments(parser)
    add_output_arguments(parser, "runs/distill-DATASET-seedS")
    add_resume_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.resume:
        config, out = resume_settings(DistillConfig, args, _SHORTCUTS, extra=("teacher",))
    else:
        require_dataset(args)
        config = config_from_args(DistillConfig, args, _SHORTCUTS)
        out_path = default_output_dir(args, "runs/distill-{dataset}-seed{seed}", seed=config.seed)
    dataset = dataset_from_args(args)
    _check_teacher(args.teacher, dataset, config)
    if not args.resume:
        out = prepare_output_dir(out_path, args.overwrite)
        record_run(out, args, extra=("teacher",))
    distiller = Distiller(dataset, config, run_dir=out, teacher_run=args.teacher, progress=not args.no_progress)
    result = distiller.run(resume=bool(args.resume))
    print(f"best summary: epoch {result.best_epoch}, valid {config.select_metric} {result.best_value:.4f} "
          f"({config.eval_init} initialisation); median {result.seconds_per_step:.2f} s per outer step")
    print(f"summary: {out / 'summary_best.safetensors'}")
    return 0


def _check_teacher(teacher_run: str | None, dataset, config: DistillConfig) -> None:
    """Before any work: the teacher folder is a finished run on this data, and the summary and real inputs
    fit the learner's position table (the teacher's, or the one a teacher trained here will have)."""
    if teacher_run is None:
        config.check_learner(config.model, config.max_len)
        return
    teacher = load_teacher(teacher_run, dataset, resolve_device(config.device))
    config.check_learner(teacher.model_name, teacher.model.max_len)
