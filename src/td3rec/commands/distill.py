"""``td3rec distill``: distill a dataset into a synthetic sequence summary (TD3, or Farzi Data with --method farzi)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging

import torch

from td3rec.commands._common import (
    add_config_arguments,
    add_output_arguments,
    config_from_args,
    explicit_settings,
    default_output_dir,
    prepare_output_dir,
)
from td3rec.commands._dataset_args import add_dataset_arguments, dataset_from_args, require_dataset
from td3rec.commands._resume import add_resume_argument, claim_run, record_run, resume_settings
from td3rec.config import to_dict
from td3rec.distill.config import DistillConfig, apply_size_defaults
from td3rec.distill.schedule import parse_duration
from td3rec.distill.distiller import Distiller
from td3rec.distill.distributed import launch, launch_environment, process_group
from td3rec.distill.sizes import check_distill_memory
from td3rec.distill.teacher import load_teacher, match_teachers
from td3rec.errors import ConfigError
from td3rec.utils.device import resolve_device

NAME = "distill"
HELP = ("distill a dataset into a synthetic sequence summary: TD3 (reference ML-100k settings by default) or "
        "Farzi Data (--method farzi)")

#: command-line flags that are shortcuts for config keys
_SHORTCUTS = {
    "epochs": "epochs", "max_steps": "max_steps", "n_sequences": "n_sequences", "seq_len": "seq_len",
    "d1": "d1", "d2": "d2", "inner_steps": "inner_steps", "window": "window", "real_batch_size": "real_batch_size",
    "feature_weight": "feature_weight", "outer_lr": "outer_lr", "seed": "seed", "device": "device",
    "eval_init": "eval_init", "model": "model", "method": "method", "precision": "precision",
    "time_budget": "time_budget",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser, positional=False, required=False)
    parser.add_argument("--teacher", metavar="RUN_DIR", action="append",
                        help="folder of a `td3rec train` run to use as teacher (default: train one on the fly); "
                             "repeat it once per architecture of a multi-architecture --model")
    parser.add_argument("--method", choices=["td3", "farzi"],
                        help="summary: td3 (Tucker factors, default) or farzi (latent summary x learned decoder)")
    parser.add_argument("--model", help="distillation architecture (default sasrec), or several separated by commas "
                                        "(e.g. sasrec,gru4rec,narm,bert4rec): one summary distilled through all of "
                                        "them (see README, Multi-architecture distillation)")
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
    parser.add_argument("--precision", help="autocast of the learner work: fp32 (default) or bf16 (see README)")
    parser.add_argument("--time-budget", type=_duration, metavar="DURATION",
                        help="wall-clock budget of the distillation, e.g. 30m, 1.5h or 900 (seconds): the outer "
                             "steps that fit are planned and the cosine schedule spans them (teacher training "
                             "excluded; default: none, run --epochs)")
    add_config_arguments(parser)
    add_output_arguments(parser, "runs/distill-DATASET-seedS")
    add_resume_argument(parser)
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="distil with N processes on this machine (re-runs this command under "
                             "torch.distributed.run; needs --teacher). For several machines start `torchrun ... -m "
                             "td3rec distill ...` on each instead (see README)")


def run(args: argparse.Namespace) -> int:
    if args.time_budget == 0:  # (time_budget: 0 in a config means "no budget"; on the command line it is a slip)
        raise ConfigError("--time-budget 0 leaves no time to distil; give a positive duration (e.g. 30m), or leave "
                          "--time-budget out to run --epochs without a budget")
    # inside a torchrun group (torchrun ... -m td3rec distill, or --nproc N) or a single process
    env = launch_environment(args.nproc)
    if not env.is_main and not args.verbose:
        logging.getLogger("td3rec").setLevel(logging.ERROR)  # process 0 reports; the others only errors
    if args.resume:
        config, out = resume_settings(DistillConfig, args, _SHORTCUTS, extra=("teacher",))
    else:
        require_dataset(args)
        config = config_from_args(DistillConfig, args, _SHORTCUTS)
        out_path = default_output_dir(args, "runs/distill-{dataset}-seed{seed}", seed=config.seed,
                                      check=env.is_main)
    if env.distributed and args.teacher is None:
        raise ConfigError("multi-process distillation needs a trained teacher: give --teacher RUN_DIR (train one "
                          "with `td3rec train` first)")
    if env.needs_launch:  # --nproc N: run this same command line in N processes and wait for them
        return launch(args._argv, env.launch_nproc)
    with process_group(env, resolve_device(config.device)) as group:
        dataset = group.local_main_first(lambda: dataset_from_args(args))
        if not args.resume:  # settings the user left open take the catalogue size's defaults
            config = apply_size_defaults(config, dataset.n_items, explicit_settings(args, _SHORTCUTS))
        teacher = _check_teacher(args.teacher, dataset, config)
        if group.world_size > 1:
            group.check_same("the data, the teacher and the settings",
                             (dataset.fingerprint(), _digest(teacher), to_dict(config)))
        if args.resume:
            group.on_main(lambda: claim_run(out))
        else:
            out = group.on_main(lambda: _prepare_output(out_path, args))
        distiller = Distiller(dataset, config, run_dir=out, teacher_run=args.teacher,
                              progress=not args.no_progress and group.is_main, distributed=group)
        result = distiller.run(resume=bool(args.resume))
    if not env.is_main:
        return 0
    print(f"best summary: epoch {result.best_epoch}, valid {config.select_metric} {result.best_value:.4f} "
          f"({config.eval_init} initialisation); median {result.seconds_per_step:.2f} s per outer step")
    print(f"summary: {out / 'summary_best.safetensors'}")
    return 0


def _check_teacher(teacher_runs: str | list[str] | None, dataset, config: DistillConfig):
    """Before any work: the teacher folders are finished runs on this data, one per architecture, and the summary
    and real inputs fit each learner's position table (the teacher's, or the one a teacher trained here will
    have). Returns the loaded teachers (None when they are trained in the run)."""
    n_examples = dataset.n_interactions + dataset.n_users
    if not teacher_runs:
        for arch in config.architectures:
            config.check_learner(arch, config.max_len)
            check_distill_memory(config, dataset.n_items, n_examples, arch, config.max_len, None)
        return None
    runs = [teacher_runs] if isinstance(teacher_runs, str) else list(teacher_runs)
    teachers = [load_teacher(run, dataset, resolve_device(config.device)) for run in runs]
    if len(config.architectures) > 1 or len(teachers) > 1:
        teachers = match_teachers(teachers, config.architectures)
    for teacher in teachers:
        config.check_learner(teacher.model_name, teacher.model.max_len)
        check_distill_memory(config, dataset.n_items, n_examples, teacher.model_name, teacher.model.max_len,
                             dataclasses.asdict(teacher.model.config))
    return teachers


def _prepare_output(out_path, args: argparse.Namespace):
    """Create the output folder and record how the run was started (process 0 only)."""
    out = prepare_output_dir(out_path, args)
    record_run(out, args, extra=("teacher",))
    return out


def _duration(text: str) -> float:
    """argparse type of ``--time-budget`` (a bad value is argparse's one-line usage error)."""
    try:
        return parse_duration(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _digest(teachers) -> str | None:
    """A digest of the teachers' weights: every process of a group must distil with the same teachers."""
    if teachers is None:
        return None
    digest = hashlib.sha256()
    for teacher in teachers:
        for name, tensor in teacher.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
