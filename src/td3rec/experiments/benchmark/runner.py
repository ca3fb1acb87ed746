"""Running a grid (``td3rec benchmark``): plan its cells, take the finished ones from ``RESULTS/cells/``,
compute the others one by one (each written atomically as ``RESULTS/cells/KEY.json`` as soon as it finishes) and
keep the results table up to date, also when interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from td3rec.data.loading import default_preprocess_config, load_dataset
from td3rec.data.sequences import SequenceDataset
from td3rec.experiments.benchmark.compute import BusyError, DatasetContext, claimed, compute_cell, read_json
from td3rec.experiments.benchmark.config import BenchmarkConfig, BenchmarkDataset
from td3rec.experiments.benchmark.plan import plan_cells
from td3rec.experiments.benchmark.table import write_table
from td3rec.experiments.proxy import _warm_up
from td3rec.utils.atomic import write_json, write_text
from td3rec.utils.device import resolve_device

log = logging.getLogger(__name__)

#: how long a process waits before looking again at cells that other processes hold
BUSY_WAIT_SECONDS = 20.0

#: the finished cells' folder and the copy of the resolved config, under the results folder
CELLS_DIR, CONFIG_FILE = "cells", "benchmark.yaml"
#: what a finished cell's ``status`` can be
FINISHED = ("done", "skipped", "failed")

def read_cell(path: Path) -> dict | None:
    """A finished cell's record, or ``None`` when the file is missing or not a finished cell."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") in FINISHED else None


@dataclass
class BenchmarkResult:
    """What a :func:`run_benchmark` call did: cells computed now, taken from earlier runs, and all rows."""

    results_dir: Path
    rows: list[dict]
    computed: int = 0
    reused: int = 0

    @property
    def total(self) -> int:
        return len(self.rows)


def run_benchmark(config: BenchmarkConfig, results_dir: str | Path, data_dir: str | Path | None = None,
                  progress: bool = True, on_cell: Callable[[dict], None] | None = None,
                  compute: bool = True) -> BenchmarkResult:
    """Run every cell of the grid not finished in ``results_dir`` yet; write the table; return what was done.
    With ``compute=False`` nothing is run: the table holds the cells finished so far (status ``partial`` when
    some are missing)."""
    config.validate()
    results = Path(results_dir)
    device = resolve_device(config.device)
    write_text(results / CONFIG_FILE, _yaml(config))
    datasets = {ds.name: _load(ds, data_dir) for ds in config.datasets}
    fingerprints = {name: d.fingerprint() for name, d in datasets.items()}
    cells = plan_cells(config, fingerprints)
    records: dict[str, dict] = {}
    for cell in cells:
        record = read_cell(results / CELLS_DIR / f"{cell.key}.json")
        if record is not None:
            records[cell.key] = record
    reused = len(records)
    log.info("benchmark: %d cells, %d finished earlier, %d to compute; results in %s", len(cells), reused,
             len(cells) - reused, results)
    contexts: dict[str, DatasetContext] = {}
    if not compute:
        for spec in config.datasets:  # the teachers trained so far, for the table's cost facts
            ctx = DatasetContext(config, spec, datasets[spec.name], results, device, progress)
            timing = ctx.teacher_dir(config.teacher.model) / "benchmark_timing.json"
            if timing.is_file():
                ctx.teacher_seconds[config.teacher.model] = read_json(timing).get("train_seconds", float("nan"))
            contexts[spec.name] = ctx
        status = "finished" if len(records) == len(cells) else "partial"
        rows = write_table(results, config, cells, records, contexts, status)
        return BenchmarkResult(results, rows, computed=0, reused=reused)
    if len(records) < len(cells):
        _warm_up(device)  # one-off process costs are not charged to whichever cell comes first
    computed = 0
    last_write = time.monotonic()
    complete = False
    bar = tqdm(total=len(cells), initial=reused, desc="benchmark", unit="cell", disable=None if progress else True)
    (results / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    try:
        pending = [cell for cell in cells if cell.key not in records]
        while pending:  # other processes may share the folder: a cell one of them holds is left for later
            busy = []
            for cell in pending:
                path = results / CELLS_DIR / f"{cell.key}.json"
                try:
                    with claimed(results, f"cell-{cell.key}", f"cell {cell.label}"):
                        record = read_cell(path)  # (finished elsewhere meanwhile?)
                        if record is None:
                            spec = next(d for d in config.datasets if d.name == cell.dataset)
                            if cell.dataset not in contexts:
                                contexts[cell.dataset] = DatasetContext(config, spec, datasets[cell.dataset],
                                                                         results, device, progress)
                            bar.set_postfix_str(cell.label[:60])
                            record = compute_cell(cell, contexts[cell.dataset])
                            write_json(path, record)
                            computed += 1
                            if on_cell is not None:
                                on_cell(record)
                except BusyError as err:
                    log.debug("%s; later", err)
                    record = None
                if record is None:
                    busy.append(cell)
                    continue
                records[cell.key] = record
                bar.update(1)
                if time.monotonic() - last_write > 5.0:
                    write_table(results, config, cells, records, contexts, "running")
                    last_write = time.monotonic()
            if busy and len(busy) == len(pending):  # all held elsewhere: wait for the other processes
                log.info("waiting for %d cells that other processes are computing", len(busy))
                time.sleep(BUSY_WAIT_SECONDS)
            pending = busy
        complete = True
    finally:
        bar.close()
        if not complete:  # interrupted: keep the table up to date with what finished (best effort)
            try:
                write_table(results, config, cells, records, contexts, "interrupted")
            except Exception as err:  # noqa: BLE001 - the original exception is the one to report
                log.warning("could not write the results table: %s", err)
    rows = write_table(results, config, cells, records, contexts, "finished")
    return BenchmarkResult(results, rows, computed=computed, reused=reused)


# -- helpers ----------------------------------------------------------------------------------------------


def _load(spec: BenchmarkDataset, data_dir: str | Path | None) -> SequenceDataset:
    config = default_preprocess_config(spec.source)
    overrides = {k: v for k, v in (("k_core", spec.k_core), ("k_core_mode", spec.k_core_mode),
                                   ("top_items", spec.top_items)) if v is not None}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return load_dataset(spec.source, config=config, data_dir=data_dir, fmt=spec.format)


def _yaml(config: BenchmarkConfig) -> str:
    from td3rec.config import dump_yaml

    return dump_yaml(config)
