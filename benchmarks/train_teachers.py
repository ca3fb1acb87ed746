"""Train (or finish) the teachers a comparison grid needs, into ``RESULTS/teachers/``, without computing a cell.

A grid trains its teachers lazily, inside the first cell that needs one; this script does only that step, so a
long teacher can run on its own core while the distillations that need it are still being declared, and two
grids whose teacher settings and data are equal can share one teacher folder (same name, same key).

    OMP_NUM_THREADS=1 python benchmarks/train_teachers.py benchmarks/amazon/beauty.yaml \\
        --results runs/amazon/beauty --data-dir "$TD3REC_DATA_DIR"
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from td3rec.experiments.benchmark.compute import DatasetContext
from td3rec.experiments.benchmark.config import load_benchmark_config
from td3rec.experiments.benchmark.runner import _load
from td3rec.utils.device import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the grid's YAML file")
    parser.add_argument("--results", required=True, help="the grid's results folder")
    parser.add_argument("--data-dir", default=None, help="dataset cache folder (default: $TD3REC_DATA_DIR)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = load_benchmark_config(args.config, args.set)
    config.validate()
    device = resolve_device(config.device)
    for spec in config.datasets:
        context = DatasetContext(config, spec, _load(spec, args.data_dir), Path(args.results),
                                 device, progress=True)
        arch = config.teacher.model
        context.teacher(arch)
        print(f"{spec.name} {arch}: {context.teacher_dir(arch)} ({context.teacher_seconds[arch]:.0f} s)")


if __name__ == "__main__":
    main()
