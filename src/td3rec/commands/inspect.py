"""``td3rec inspect``: a summary's entropy, coverage and popularity profile; top items per position on request."""

from __future__ import annotations

import argparse
import json
import logging

from td3rec.commands._dataset_args import add_dataset_arguments, dataset_from_args
from td3rec.commands._outputs import guard_output, prepare_output
from td3rec.errors import ConfigError
from td3rec.summary.distributions import SummaryDistributions
from td3rec.summary.inspect import format_report, inspect_distributions, inspection_report, real_item_counts
from td3rec.utils.run_folder import lock_folder

NAME = "inspect"
HELP = "show a summary's top items and entropy per position, its catalogue coverage and popularity profile"

#: dataset options (flag: argparse destination) that mean nothing without --dataset
_DATASET_OPTIONS = {"--data-dir": "data_dir", "--format": "data_format", "--user-col": "user_col",
                    "--item-col": "item_col", "--time-col": "time_col", "--k-core": "k_core",
                    "--k-core-mode": "k_core_mode", "--top-items": "top_items"}

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("summary", metavar="SUMMARY", help="a summary file (.safetensors) from `td3rec distill`")
    add_dataset_arguments(parser, positional=False, required=False,
                          what="compare the summary's popularity profile with this dataset (registered name or "
                               "file; use the preprocessing it was distilled with)")
    parser.add_argument("--top", type=int, default=10, metavar="K", help="items listed per position (default 10)")
    parser.add_argument("--threshold", type=float, metavar="P",
                        help="coverage counts items whose largest probability exceeds P (default 1/|I|)")
    parser.add_argument("--positions", action="store_true",
                        help="after the overview, list every synthetic sequence's positions (entropy, top items)")
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON (always with every position)")
    parser.add_argument("--figures", metavar="DIR",
                        help="write entropy_per_position.png, popularity.png and top_items_heatmap.png into this "
                             "folder (td3rec's: a new or empty one, or one an earlier --figures made)")
    parser.add_argument("--heatmap-sequences", type=int, default=3, metavar="N",
                        help="synthetic sequences shown in the heat map (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace the figures of an earlier --figures DIR")


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ConfigError(f"--top must be positive, got {args.top}")
    if args.threshold is not None and not 0 <= args.threshold < 1:
        raise ConfigError(f"--threshold must be in [0, 1), got {args.threshold}")
    if args.heatmap_sequences < 1:
        raise ConfigError(f"--heatmap-sequences must be positive, got {args.heatmap_sequences}")
    given = [flag for flag, dest in _DATASET_OPTIONS.items() if getattr(args, dest, None) is not None]
    if given and not args.dataset:
        raise ConfigError(f"{given[0]} only applies with --dataset (the real data to compare with)")
    if args.figures:  # a figures folder td3rec created (replaced with --overwrite), checked before any work
        guard_output(args, "figures")
    dist = SummaryDistributions.from_file(args.summary)
    real_counts = real_info = None
    if args.dataset:
        dataset = dataset_from_args(args)
        real_counts, real_info = real_item_counts(dataset, dist.item_tokens)
        real_info["fingerprint_match"] = dataset.fingerprint() == dist.metadata.get("dataset_fingerprint")
        if not real_info["fingerprint_match"]:
            log.warning("%s (as preprocessed here) is not the data the summary was distilled from; items are "
                        "matched by raw id (%d summary items not in it)", args.dataset,
                        real_info["summary_items_not_in_data"])
    insp = inspect_distributions(dist, args.top)
    report = inspection_report(dist, insp, args.threshold, real_counts, real_info)
    if args.figures:
        from td3rec.summary.figures import write_figures  # matplotlib only when figures are asked for

        folder = prepare_output(args, "figures", lock=lambda out: lock_folder(out, "figures folder"))
        paths = write_figures(dist, insp, folder, real_counts, args.heatmap_sequences)
        report["figures"] = [str(p) for p in paths]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, positions=args.positions))
    return 0
