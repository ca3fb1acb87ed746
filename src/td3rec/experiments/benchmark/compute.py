"""Computing one cell: the learner of one architecture, initialisation protocol and seed, trained on one kind of
training data and tested on the real test users.

A dataset's costly shared work is built lazily by its :class:`DatasetContext` and cached: teachers (one per
architecture, ``td3rec train`` run folders in ``RESULTS/teachers/``), the teacher's features (herding,
k-center), real subsets, and distilled summaries (``td3rec distill`` run folders in ``RESULTS/summaries/``); an
interrupted teacher or distillation continues from its own resume checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from td3rec.config import to_dict
from td3rec.data.sequences import LeaveOneOutSplit, SequenceDataset, leave_one_out
from td3rec.errors import DivergedError
from td3rec.evaluation.sources import HardSequences
from td3rec.evaluation.summary_eval import evaluate_sources
from td3rec.experiments.benchmark.config import BenchmarkConfig, BenchmarkDataset, BenchmarkMethod
from td3rec.experiments.benchmark.plan import Cell, settings_key, without_device
from td3rec.models.registry import build_model
from td3rec.summary.real_subset import FEATURE_METHODS, last_prefix_features, real_subset
from td3rec.utils.atomic import write_json
from td3rec.utils.run_folder import claim

log = logging.getLogger(__name__)

#: run folders of the shared work, under the results folder
TEACHERS_DIR, SUMMARIES_DIR = "teachers", "summaries"

class DatasetContext:
    """One dataset's data, teachers, features and summaries, built lazily and cached (on disk where costly)."""

    def __init__(self, config: BenchmarkConfig, spec: BenchmarkDataset, dataset: SequenceDataset,
                 results: Path, device: torch.device, progress: bool) -> None:
        self.config, self.spec, self.dataset = config, spec, dataset
        self.results, self.device, self.progress = results, device, progress
        self.split: LeaveOneOutSplit = leave_one_out(dataset)
        self.teachers: dict[str, Any] = {}
        self.teacher_seconds: dict[str, float] = {}
        self._features: torch.Tensor | None = None
        self._feature_seconds = 0.0
        self._summaries: dict[tuple, tuple[Any, dict]] = {}

    # teachers ---------------------------------------------------------------------------------------
    def teacher(self, arch: str):
        """The trained teacher of ``arch`` (trained once into ``RESULTS/teachers/``)."""
        if arch not in self.teachers:
            from td3rec.distill.teacher import train_teacher

            cfg = self.config.teacher_config(arch)
            run = self.teacher_dir(arch)
            timing = run / "benchmark_timing.json"
            with claimed(self.results, f"teacher-{run.name}", f"the teacher {run}"):  # (another process sharing the results may be training it)
                start = time.perf_counter()
                teacher = train_teacher(self.dataset, cfg, run, self.progress, self.device, resume=run.is_dir())
                if not timing.is_file():
                    write_json(timing, {"train_seconds": time.perf_counter() - start})
            self.teacher_seconds[arch] = read_json(timing).get("train_seconds", float("nan"))
            self.teachers[arch] = teacher
        return self.teachers[arch]

    def teacher_dir(self, arch: str) -> Path:
        cfg = self.config.teacher_config(arch)
        key = settings_key({"fingerprint": self.dataset.fingerprint(), "teacher": without_device(to_dict(cfg))})
        return self.results / TEACHERS_DIR / f"{_slug(self.spec.name)}-{arch}-{key[:8]}"

    def item_factor(self) -> torch.Tensor:
        """V: the distillation teacher's item embedding times the grid's ``distill.item_factor_scale`` (the shared
        item factor of the real subsets: the summaries' V)."""
        V = self.teacher(self.config.teacher.model).model.item_vectors().detach().to(self.device)
        return V * self.config.distill.item_factor_scale

    def features(self) -> tuple[torch.Tensor, float]:
        if self._features is None:
            start = time.perf_counter()
            self._features = last_prefix_features(self.teacher(self.config.teacher.model).model, self.split)
            self._feature_seconds = time.perf_counter() - start
        return self._features, self._feature_seconds

    # training data ----------------------------------------------------------------------------------
    def source(self, cell: Cell) -> tuple[Any, dict]:
        """The training data of a cell and its facts (time to produce it, size)."""
        key = (cell.method, cell.n, cell.seq_len, cell.seed if cell.kind == "random" else None)
        if key not in self._summaries:
            self._summaries[key] = self._distilled(cell) if cell.family == "distill" else self._subset(cell)
        return self._summaries[key]

    def _subset(self, cell: Cell) -> tuple[Any, dict]:
        start = time.perf_counter()
        features, feature_seconds = self.features() if cell.kind in FEATURE_METHODS else (None, 0.0)
        subset = real_subset(self.split, cell.kind, cell.n, cell.seq_len, seed=cell.seed, features=features)
        seconds = time.perf_counter() - start + feature_seconds
        interactions = int(subset.full_lengths.sum())
        facts = {"data_seconds": seconds, "data_interactions": interactions,
                 "summary_parameters": None, "summary_parameters_with_item_factor": None,
                 "size_fraction": interactions / self.dataset.n_interactions}
        return subset, facts

    def summary_dir(self, cell: Cell) -> Path:
        key = settings_key({"fingerprint": self.dataset.fingerprint(), "distill": cell.settings["distill"],
                            "teacher": cell.settings["teacher"]})
        return self.results / SUMMARIES_DIR / f"{_slug(self.spec.name)}-{_slug(cell.method)}-n{cell.n}-L{cell.seq_len}-{key[:8]}"

    def _distilled(self, cell: Cell) -> tuple[Any, dict]:
        from td3rec.evaluation.suite import summary_source

        run = self.summary_dir(cell)
        metrics = read_json(run / "metrics.json")
        timing = run / "benchmark_timing.json"
        if metrics.get("status") == "diverged":
            raise DivergedError(metrics.get("message", "distillation diverged"))
        if metrics.get("status") != "finished":
            config = self.config.distill_config(_method(self.config, cell.method), cell.n, cell.seq_len, self.spec)
            teachers = [self.teacher(arch) for arch in config.architectures]  # (one per architecture distilled through)
            with claimed(self.results, f"summary-{run.name}", f"the summary {run}"):
                metrics = read_json(run / "metrics.json")  # (finished by another process meanwhile?)
                if metrics.get("status") != "finished":
                    self._distill(cell, run, config, teachers, timing)
                metrics = read_json(run / "metrics.json")
        source = summary_source(str(run / "summary_best.safetensors"), self.dataset, self.device,
                                self.config.training.chunk_size)
        params = metrics.get("summary_parameters")
        facts = {"data_seconds": read_json(timing).get("distill_seconds"),
                 "data_resumed": read_json(timing).get("resumed", False),
                 "data_interactions": cell.n * cell.seq_len, "summary_parameters": params,
                 "summary_parameters_with_item_factor": metrics.get("summary_parameters_with_item_factor"),
                 "size_fraction": params / self.dataset.n_interactions if params is not None else None,
                 "summary_dir": str(run)}
        return source, facts

    def _distill(self, cell: Cell, run: Path, config, teachers: list, timing: Path) -> None:
        """Distil (or resume distilling) the summary of ``cell`` into ``run`` with ``config`` and its teachers."""
        from td3rec.distill.distiller import Distiller

        resumed = (run / "resume.pt").is_file()
        log.info("distilling %s %s n=%d L=%d into %s", self.spec.name, cell.method, cell.n, cell.seq_len, run)
        start = time.perf_counter()
        Distiller(self.dataset, config, run_dir=run, teacher_run=[t.run_dir for t in teachers],
                  progress=self.progress).run(resume=resumed)
        write_json(timing, {"distill_seconds": time.perf_counter() - start, "resumed": resumed})


def compute_cell(cell: Cell, ctx: DatasetContext) -> dict:
    """Train and test the learner of one cell; returns its record (status ``done``, ``skipped`` or ``failed``)."""
    config = ctx.config
    record = {**cell.header(), "settings": cell.settings, "real_interactions": ctx.dataset.n_interactions}
    try:
        if cell.family == "whole":
            from td3rec.training.trainer import train_full_data

            start = time.perf_counter()
            res = train_full_data(ctx.dataset, config.whole_config(cell.arch, cell.seed), progress=False)
            return {**record, "status": "done", "test": res.test, "valid": res.valid,
                    "train_seconds": time.perf_counter() - start, "best_epoch": res.best_epoch,
                    "epochs_run": len(res.history), "seconds_per_epoch": res.seconds_per_epoch, "data_seconds": 0.0,
                    "data_interactions": ctx.dataset.n_interactions, "size_fraction": 1.0}
        source, facts = ctx.source(cell)
    except DivergedError as err:
        log.warning("%s: failed (%s)", cell.label, err)
        return {**record, "status": "failed", "reason": str(err)}
    record.update(facts)
    teacher = None
    if cell.init == "reference":
        teacher = ctx.teacher(cell.arch).model
    if cell.init == "shared-item-factor":
        V = source.V if cell.family == "distill" else ctx.item_factor()
        width = _feature_size(cell.arch, ctx.dataset.n_items, config.max_len, config.options_for(cell.arch))
        if V is None or V.shape[1] != width:
            reason = (f"shared-item-factor needs the learner's item embedding width ({width}) to equal V's "
                      f"({None if V is None else V.shape[1]})")
            return {**record, "status": "skipped", "reason": reason}
        if cell.family == "subset":
            source = HardSequences(source.ids, source.full_lengths, V)
    training = dataclasses.replace(config.training, batch_size=min(config.training.batch_size, cell.n))
    res = evaluate_sources(source, ctx.split, arch=cell.arch, protocol=cell.init, seeds=[cell.seed], which="test",
                           max_len=config.max_len, eval_config=config.eval, device=ctx.device, training=training,
                           teacher=teacher, model_options=config.options_for(cell.arch))
    return {**record, "status": "done", "test": res["runs"][0], "train_seconds": res["train_seconds"][0]}


# -- helpers ----------------------------------------------------------------------------------------------


class BusyError(Exception):
    """What a cell needs (its teacher or summary) is being made by another process sharing the results folder;
    the cell is left for later (:func:`td3rec.experiments.benchmark.runner.run_benchmark`)."""


#: the claims of processes sharing a results folder (lock files of cells, teachers and summaries)
LOCKS_DIR = ".locks"


@contextmanager
def claimed(results: Path, name: str, what: str) -> Iterator[None]:
    """Hold the claim ``name`` in ``results`` for the block, or raise :class:`BusyError` naming ``what``."""
    (results / LOCKS_DIR).mkdir(parents=True, exist_ok=True)
    with claim(results / LOCKS_DIR / f"{name}.lock") as mine:
        if not mine:
            raise BusyError(f"{what} is being made by another process")
        yield


def _method(config: BenchmarkConfig, name: str) -> BenchmarkMethod:
    return next(m for m in config.methods if m.name == name)


def _feature_size(arch: str, n_items: int, max_len: int, options: dict) -> int:
    return build_model(arch, n_items, max_len, **options).hidden_size


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"
