"""``td3rec export``: turn a soft summary into hard synthetic interaction sequences for other libraries."""

from __future__ import annotations

import argparse

from td3rec.commands._outputs import guard_output
from td3rec.errors import ConfigError
from td3rec.summary.export import EXPORT_FORMATS, EXPORT_MODES, export_summary

NAME = "export"
HELP = "write a summary as hard synthetic sequences (RecBole .inter, CSV or one-user-per-line text)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("summary", metavar="SUMMARY", help="a summary file (.safetensors) from `td3rec distill`")
    parser.add_argument("--format", dest="export_format", choices=EXPORT_FORMATS, default="recbole",
                        help="recbole: atomic .inter file; csv: user_id,item_id,timestamp; txt: 'user item item ...' "
                             "per line (default recbole)")
    parser.add_argument("--mode", choices=EXPORT_MODES, default="argmax",
                        help="argmax: the most probable item at every position (one sequence per synthetic "
                             "sequence); sample: --samples draws per synthetic sequence (default argmax)")
    parser.add_argument("--samples", type=int, metavar="K",
                        help="sampled sequences per synthetic sequence (--mode sample; default 1)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the draws (--mode sample; default 0)")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="output file (suffix .inter, .csv or .txt lets readers detect the format)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    if args.samples is not None and args.mode != "sample":
        raise ConfigError("--samples only applies to --mode sample")
    samples = 1 if args.samples is None else args.samples
    if samples < 1:
        raise ConfigError(f"--samples must be a positive number of draws per synthetic sequence, got {samples}")
    guard_output(args, "out")  # not the summary, not a name td3rec writes in its folders; --overwrite to replace
    seqs = export_summary(args.summary, args.out, fmt=args.export_format, mode=args.mode, samples=samples,
                          seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {len(seqs)} synthetic sequences ({seqs.n_interactions:,} interactions, "
          f"{len(set(seqs.items.ravel().tolist())):,} distinct items) to {args.out}")
    return 0
