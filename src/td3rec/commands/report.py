"""``td3rec report``: a Markdown report with tables and figures from ``td3rec benchmark`` results."""

from __future__ import annotations

import argparse

from td3rec.experiments.report import REPORT_FILE, write_report

NAME = "report"
HELP = "write a Markdown report (tables, figures, cost view) from the results of td3rec benchmark"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS", help="a td3rec benchmark results folder (or its results.json)")
    parser.add_argument("--out", metavar="DIR", help="report folder (default: RESULTS/report)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    parser.add_argument("--metrics", metavar="LIST",
                        help="comma-separated PROTOCOL:METRIC columns (default: NDCG@10 under every protocol); the "
                             "first is the one of the figures and the cost view")
    parser.add_argument("--arch", help="architecture of the figures and the cost view (default: sasrec, else the first)")
    parser.add_argument("--init", help="protocol of the figures and the cost view (default: shared-item-factor, "
                                       "else scratch)")
    parser.add_argument("--budget", type=int, help="budget n of the per-architecture bars (default: the largest)")


def run(args: argparse.Namespace) -> int:
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    out = write_report(args.results, args.out, overwrite=args.overwrite, metrics=metrics, arch=args.arch,
                       init=args.init, budget=args.budget)
    print(f"report: {out / REPORT_FILE}")
    return 0
