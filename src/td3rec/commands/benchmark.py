"""``td3rec benchmark``: run a declared comparison grid, resumable, into one results table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from td3rec.commands._outputs import prepare_output
from td3rec.experiments.benchmark.config import load_benchmark_config
from td3rec.experiments.benchmark.runner import run_benchmark
from td3rec.experiments.benchmark.table import RESULTS_CSV, RESULTS_JSON
from td3rec.utils.atomic import remove_temporaries
from td3rec.utils.run_folder import lock_folder

NAME = "benchmark"
HELP = ("run a comparison grid (datasets x methods x budgets x architectures x protocols x seeds); rerunning "
        "continues where it stopped")

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml", help="the grid and its settings (see README)")
    parser.add_argument("--results", metavar="DIR",
                        help="results folder; finished cells there are kept and not recomputed "
                             "(default: runs/benchmark-CONFIG)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="dataset cache folder (default: $TD3REC_DATA_DIR, else ~/.cache/td3rec)")
    parser.add_argument("--device", help="auto, cpu or cuda (default: the config's device)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of CONFIG.yaml, e.g. --set seeds=1 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--table-only", action="store_true",
                        help="compute nothing: write the results table of the cells finished so far (e.g. while "
                             "another process runs the grid, or to collect cells computed by partial runs)")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f"device={args.device}")
    config = load_benchmark_config(args.config, overrides)
    results = Path(args.results or f"runs/benchmark-{Path(args.config).stem}")
    # a results folder td3rec created (or a new or empty one), not holding or inside an input (the output guard);
    # one process computes into it; --table-only may read it meanwhile, so it takes no lock
    lock = None if args.table_only else (
        # shared: processes may split a grid's cells between them (each claims the cells it computes)
        lambda out: lock_folder(out, "results folder", shared=True, when_alone=lambda: remove_temporaries(out)))
    results = prepare_output(args, "results", results, lock=lock)
    result = run_benchmark(config, results, data_dir=args.data_dir, progress=not args.no_progress,
                           compute=not args.table_only)
    statuses: dict[str, int] = {}
    for row in result.rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    print(f"{result.total} cells: {result.computed} computed now, {result.reused} finished earlier "
          f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})")
    print(f"results: {results / RESULTS_CSV}, {results / RESULTS_JSON}")
    print(f"report: td3rec report {results}")
    return 0
