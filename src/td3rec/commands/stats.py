"""``td3rec stats``: size, density and sequence lengths of a dataset after preprocessing."""

from __future__ import annotations

import argparse
import json

from td3rec.commands._dataset_args import add_dataset_arguments, dataset_from_args
from td3rec.data.loading import dataset_stats

NAME = "stats"
HELP = "show users, items, interactions, sequence lengths and density of a dataset after preprocessing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser, positional=True)
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")


def run(args: argparse.Namespace) -> int:
    dataset = dataset_from_args(args)
    stats = dataset_stats(dataset)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    return 0


def format_stats(stats: dict) -> str:
    """Human-readable statistics, one quantity per line."""
    lengths = stats["sequence_length"]
    prep = stats.get("preprocessing", {})
    k = prep.get("k_core")
    prep_text = "no k-core" if k is not None and k <= 1 else f"{k}-core {prep.get('k_core_mode')}"
    if prep.get("top_items"):
        prep_text = f"top {prep['top_items']:,} items, {prep_text}"
    return "\n".join([
        f"dataset        {stats['name']}",
        f"preprocessing  {prep_text}",
        f"users          {stats['users']:,}",
        f"items          {stats['items']:,}",
        f"interactions   {stats['interactions']:,}",
        f"density        {stats['density']:.4%}",
        "sequence length  min {min}  p25 {p25:g}  median {median:g}  p75 {p75:g}  p90 {p90:g}  max {max}  "
        "mean {mean:.2f}".format(**lengths),
    ])
