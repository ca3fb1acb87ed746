"""A declared comparison grid, run cell by cell and resumable (``td3rec benchmark CONFIG.yaml``).

The grid is datasets × methods × budgets (``n`` synthetic sequences or real users, and their length ``L``) ×
learner architectures × initialisation protocols × seeds. One **cell** is one learner of one architecture,
initialised by one protocol with one seed, trained on one kind of training data and tested on the real test
users; ``whole`` cells are full-data learners (early stopping), one per dataset × architecture × seed.

Methods (:data:`BUILTIN_METHODS`):

- ``whole``: the full data (early stopping; ``whole.*`` settings);
- real subsets (:mod:`td3rec.summary.real_subset`): ``random`` (a new draw per seed), ``longest``,
  ``popular``, ``herding``, ``kcenter`` (the last two on the distillation teacher's features);
- distilled summaries: ``td3``, ``farzi`` and the TD3 ablations ``td3-no-feature`` (``feature_weight: 0``),
  ``td3-no-augment`` (``inner.augment: false``), ``td3-fixed-unroll`` (``random_unroll: false``),
  ``td3-full-bptt`` (``random_unroll: false``, ``window = inner_steps``), ``td3-learned-v``
  (``learn_item_factor: true``), ``td3-reset-step`` (``reset: step``); any other name with ``kind: td3`` or
  ``kind: farzi`` and ``distill`` overrides declares a variant.

**Resume.** Every finished cell is written atomically to ``RESULTS/cells/KEY.json``, ``KEY`` being a hash of
the cell's resolved settings (dataset fingerprint, method and its resolved distillation settings, budget,
architecture and learner options, protocol, seed, training and metric settings). A cell whose file exists is
never recomputed; a rerun of the same command computes only the missing cells (changing a setting changes
the keys of the cells it affects, and only those are computed). Teachers (one per dataset and architecture,
trained once) live in ``RESULTS/teachers/`` and summaries (one per dataset × method × budget, distilled once)
in ``RESULTS/summaries/``; both are ``td3rec train`` / ``td3rec distill`` run folders and an interrupted one
continues from its own resume checkpoint.

**Results.** ``RESULTS/results.csv`` and ``RESULTS/results.json`` hold one row per finished cell of the
current grid (rewritten atomically as cells finish); ``results.json`` also records the teachers' training
times and the resolved config. ``td3rec report RESULTS`` turns them into tables and figures.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from td3rec.config import from_dict, read_settings, to_dict
from td3rec.data.loading import default_preprocess_config, is_registry_name, load_dataset
from td3rec.data.sequences import LeaveOneOutSplit, SequenceDataset, leave_one_out
from td3rec.distill.config import DistillConfig
from td3rec.errors import ConfigError, DivergedError
from td3rec.evaluation.evaluator import EvalConfig
from td3rec.evaluation.initialisation import PROTOCOLS
from td3rec.evaluation.learner_training import LearnerTrainingConfig
from td3rec.experiments.proxy import FullTrainingConfig, _warm_up
from td3rec.evaluation.sources import HardSequences
from td3rec.evaluation.summary_eval import evaluate_sources
from td3rec.models.registry import MODEL_NAMES, build_model, make_model_config, max_input_length
from td3rec.summary.real_subset import FEATURE_METHODS, SUBSET_METHODS, last_prefix_features, real_subset
from td3rec.training.config import TrainConfig
from td3rec.utils.atomic import write_json, write_text
from td3rec.utils.device import resolve_device

log = logging.getLogger(__name__)

#: kinds of training data a method can be
DISTILL_KINDS = ("td3", "farzi")
METHOD_KINDS = ("whole",) + SUBSET_METHODS + DISTILL_KINDS

#: method names known without a declaration: name -> (kind, overrides of the ``distill`` settings)
BUILTIN_METHODS: dict[str, tuple[str, dict]] = {
    "whole": ("whole", {}),
    **{name: (name, {}) for name in SUBSET_METHODS},
    "td3": ("td3", {}),
    "farzi": ("farzi", {}),
    "td3-no-feature": ("td3", {"feature_weight": 0.0}),
    "td3-no-augment": ("td3", {"inner": {"augment": False}}),
    "td3-fixed-unroll": ("td3", {"random_unroll": False}),
    "td3-full-bptt": ("td3", {"random_unroll": False, "window": "inner_steps"}),
    "td3-learned-v": ("td3", {"learn_item_factor": True}),
    "td3-reset-step": ("td3", {"reset": "step"}),
}

CELLS_DIR, TEACHERS_DIR, SUMMARIES_DIR = "cells", "teachers", "summaries"
RESULTS_CSV, RESULTS_JSON, CONFIG_FILE = "results.csv", "results.json", "benchmark.yaml"
#: what a finished cell's ``status`` can be
FINISHED = ("done", "skipped", "failed")


# -- configuration ----------------------------------------------------------------------------------------
@dataclass
class BenchmarkDataset:
    """One dataset of the grid.

    Attributes:
        name: label in the results (required; unique).
        source: a registered dataset name or an interaction file (default: ``name``); a relative file path is
            taken relative to the config file's folder.
        format: file format (default: detected).
        k_core: k-core filter (default: the dataset's setting).
        k_core_mode: ``iterative`` or ``single-pass`` (default: the dataset's setting).
        distill: overrides of the grid's ``distill`` settings for this dataset's distillations (nested or dotted,
            as a method's), e.g. fewer outer epochs on a dataset with many more users per epoch; a method's own
            overrides apply on top.
    """

    name: str = ""
    source: str = ""
    format: str | None = None
    k_core: int | None = None
    k_core_mode: str | None = None
    distill: dict = field(default_factory=dict)


@dataclass
class BenchmarkMethod:
    """One method of the grid (a plain string in YAML is a built-in method's name).

    Attributes:
        name: label in the results (required; unique); a built-in name (:data:`BUILTIN_METHODS`) brings its kind
            and distillation overrides.
        kind: ``whole``, a subset (``random``, ``longest``, ``popular``, ``herding``, ``kcenter``), ``td3`` or
            ``farzi`` (default: the built-in name's).
        distill: overrides of the ``distill`` settings for this method (``td3``/``farzi`` kinds), nested
            (``{inner: {augment: false}}``) or dotted (``{inner.augment: false}``); the value ``inner_steps``
            of ``window`` means the method's ``inner_steps``.
    """

    name: str = ""
    kind: str = ""
    distill: dict = field(default_factory=dict)


@dataclass
class GridSlice:
    """One part of the grid: the product of these lists (an unset one takes the grid's top-level value).

    Attributes:
        methods: names of methods (of the grid's ``methods``).
        budgets, seq_lens, archs, inits: as the grid's keys.
    """

    methods: list[str] | None = None
    budgets: list[int] | None = None
    seq_lens: list[int] | None = None
    archs: list[str] | None = None
    inits: list[str] | None = None


@dataclass
class BenchmarkConfig:
    """A comparison grid (``td3rec benchmark CONFIG.yaml``).

    Attributes:
        datasets: the datasets (at least one).
        methods: the methods (at least one); strings are built-in names.
        budgets: numbers of synthetic sequences / real users ``n``.
        seq_lens: lengths ``L`` of the synthetic sequences and of the real subsets' sequences (their last ``L``
            training items); empty = ``distill.seq_len``.
        archs: learner architectures every kind of data is judged with.
        model_options: learner settings per architecture (``{gru4rec: {embedding_size: 32}}``), for the
            learners, the full-data learners and the teachers of that architecture.
        inits: initialisation protocols of learners on summaries and subsets (``shared-item-factor``,
            ``scratch``, ``reference``); a cell where one does not apply (V's width differs from the learner's)
            is recorded as skipped with the reason.
        seeds: seeds per cell group (``seed .. seed + seeds - 1``): learner seeds, and the Random-n draw.
        seed: first seed.
        max_len: input length of the teachers, the full-data learners and every learner's position table.
        teacher: the teachers' ``td3rec train`` settings; ``teacher.model`` is the distillation architecture.
            ``max_len``, ``seed``, ``device`` and ``eval`` are the benchmark's; learner settings come from
            ``model_options``.
        distill: the distillation settings shared by every ``td3``/``farzi`` method (``td3rec distill``'s keys);
            ``method``, ``n_sequences``, ``seq_len``, ``model``, ``max_len``, ``device`` and ``eval`` are set by
            the grid, and ``inner.batch_size`` is capped at ``n``.
        training: how learners are trained on summaries and subsets (``td3rec evaluate``'s ``training.*``;
            ``batch_size`` is capped at ``n``).
        whole: full-data training of the ``whole`` learners (``td3rec proxy``'s ``full_training`` keys).
        device: ``auto``, ``cpu`` or ``cuda``.
        eval: metric settings (protocols, cut-offs, ...) of every test.
        slices: when given, the grid is the union of these parts of the product instead of the whole product
            (e.g. a budget sweep on one architecture plus every architecture at one budget); each dataset gets
            every slice, and a cell in several slices runs once.
    """

    datasets: list[BenchmarkDataset] = field(default_factory=list)
    methods: list[BenchmarkMethod] = field(default_factory=list)
    budgets: list[int] = field(default_factory=lambda: [30])
    seq_lens: list[int] = field(default_factory=list)
    archs: list[str] = field(default_factory=lambda: ["sasrec"])
    model_options: dict = field(default_factory=dict)
    inits: list[str] = field(default_factory=lambda: ["shared-item-factor", "scratch"])
    seeds: int = 3
    seed: int = 0
    max_len: int = 50
    teacher: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    training: LearnerTrainingConfig = field(default_factory=LearnerTrainingConfig)
    whole: FullTrainingConfig = field(default_factory=FullTrainingConfig)
    device: str = "auto"
    eval: EvalConfig = field(default_factory=EvalConfig)
    slices: list[GridSlice] = field(default_factory=list)

    # -- resolution ----------------------------------------------------------------------------------
    def lengths(self) -> list[int]:
        """The ``L`` values of the grid's top level."""
        return list(self.seq_lens) or [self.distill.seq_len]

    def resolved_slices(self) -> list[GridSlice]:
        """The slices with every list filled in (one slice = the whole product when none is given)."""
        out = []
        for part in self.slices or [GridSlice()]:
            out.append(GridSlice(
                methods=list(part.methods) if part.methods is not None else [m.name for m in self.methods],
                budgets=list(part.budgets) if part.budgets is not None else list(self.budgets),
                seq_lens=list(part.seq_lens) if part.seq_lens is not None else self.lengths(),
                archs=list(part.archs) if part.archs is not None else list(self.archs),
                inits=list(part.inits) if part.inits is not None else list(self.inits)))
        return out

    def options_for(self, arch: str) -> dict:
        """Learner settings of ``arch`` (empty = the model's defaults)."""
        return dict(self.model_options.get(arch) or {})

    def kind_of(self, method: BenchmarkMethod) -> str:
        return method.kind or BUILTIN_METHODS.get(method.name, ("", {}))[0]

    def teacher_config(self, arch: str) -> TrainConfig:
        """The ``td3rec train`` settings of the teacher of ``arch``."""
        return dataclasses.replace(self.teacher, model=arch, model_options=self.options_for(arch),
                                   max_len=self.max_len, seed=self.seed, device=self.device, eval=self.eval,
                                   keep_trajectory=True)

    def distill_config(self, method: BenchmarkMethod, n: int, seq_len: int,
                       dataset: BenchmarkDataset | None = None) -> DistillConfig:
        """The resolved distillation settings of ``method`` at budget ``(n, seq_len)`` on ``dataset`` (the grid's
        settings, then the dataset's overrides, then the method's)."""
        kind = self.kind_of(method)
        data = to_dict(self.distill)
        if dataset is not None:
            _merge(data, _nested(dataset.distill, f"datasets[{dataset.name}].distill"))
        builtin_kind, builtin_overrides = BUILTIN_METHODS.get(method.name, ("", {}))
        if kind == builtin_kind:  # a built-in name brings its overrides (unless re-declared as another kind)
            _merge(data, copy.deepcopy(builtin_overrides))
        _merge(data, _nested(method.distill, f"methods[{method.name}].distill"))
        data.update(method=kind, n_sequences=n, seq_len=seq_len, model=self.teacher.model, max_len=self.max_len,
                    device=self.device, eval=to_dict(self.eval))
        if data.get("window") == "inner_steps":
            data["window"] = data.get("inner_steps", self.distill.inner_steps)
        data["inner"]["batch_size"] = min(int(data["inner"]["batch_size"]), n)
        config = from_dict(DistillConfig, data, where=f"methods[{method.name}].distill.")
        try:
            config.validate()
            config.check_learner(self.teacher.model, self.max_len)
        except ConfigError as err:
            where = f" on {dataset.name}" if dataset is not None else ""
            raise ConfigError(f"method {method.name} at n={n}, L={seq_len}{where}: {err}") from None
        return config

    def whole_config(self, arch: str, seed: int) -> TrainConfig:
        """Full-data training of a ``whole`` learner."""
        return TrainConfig(model=arch, model_options=self.options_for(arch), max_len=self.max_len, seed=seed,
                           device=self.device, eval=self.eval, keep_trajectory=False, **dataclasses.asdict(self.whole))

    def validate(self) -> None:
        """Reject impossible settings (every method at every budget) before any work starts."""
        if not self.datasets:
            raise ConfigError("datasets: give at least one dataset ({name: ml-100k} or {name: toy, source: toy.txt})")
        if not self.methods:
            raise ConfigError(f"methods: give at least one of {', '.join(BUILTIN_METHODS)} (or a declared variant)")
        _unique([d.name for d in self.datasets], "datasets")
        _unique([m.name for m in self.methods], "methods")
        for d in self.datasets:
            if not d.name:
                raise ConfigError("datasets: every dataset needs a name")
        resolve_device(self.device)
        if self.teacher.model_options:
            raise ConfigError(f"teacher.model_options: set the learner settings under model_options.{self.teacher.model} "
                              "(they apply to the teacher and the learners of that architecture)")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be positive, got {self.seeds}")
        for arch in self.model_options:
            if arch not in MODEL_NAMES:
                raise ConfigError(f"model_options: unknown architecture {arch!r}")
            make_model_config(arch, **self.options_for(arch))
        names = [m.name for m in self.methods]
        slices = self.resolved_slices()
        for index, part in enumerate(slices):
            where = f"slices[{index}]: " if self.slices else ""
            unknown = [m for m in part.methods if m not in names]
            if unknown or not part.methods:
                raise ConfigError(f"{where}methods: {unknown[0] if unknown else 'none'!r} is not one of the grid's "
                                  f"methods ({', '.join(names)})")
            if not part.budgets or any(n < 1 for n in part.budgets):
                raise ConfigError(f"{where}budgets must be positive numbers of sequences, got {part.budgets}")
            if any(L < 2 for L in part.seq_lens):
                raise ConfigError(f"{where}seq_lens must be at least 2, got {part.seq_lens}")
            if not part.archs:
                raise ConfigError(f"{where}archs: give at least one architecture")
            for arch in part.archs:
                if arch not in MODEL_NAMES:
                    raise ConfigError(f"{where}archs: unknown architecture {arch!r}; choose from {', '.join(MODEL_NAMES)}")
            for init in part.inits:
                if init not in PROTOCOLS:
                    raise ConfigError(f"{where}inits: unknown protocol {init!r}; choose from {', '.join(PROTOCOLS)}")
        all_lengths = sorted({L for part in slices for L in part.seq_lens})
        for arch in {a for part in slices for a in part.archs} | {self.teacher.model}:
            self.teacher_config(arch).validate()
            self.whole_config(arch, self.seed).validate()
            limit = max_input_length(arch, self.max_len)
            if limit is not None and max(all_lengths) > limit:
                raise ConfigError(f"seq_lens {all_lengths}: {arch} with max_len {self.max_len} reads at most "
                                  f"{limit} positions")
        if self.training.steps < 1 or self.training.batch_size < 1 or not self.training.lr > 0:
            raise ConfigError("training: steps, batch_size and lr must be positive")
        if self.training.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"training.optimizer must be adam or sgd, not {self.training.optimizer!r}")
        for method in self.methods:
            kind = self.kind_of(method)
            if kind not in METHOD_KINDS:
                raise ConfigError(f"method {method.name!r}: unknown kind {kind or '(none)'!r}; a method is one of "
                                  f"{', '.join(BUILTIN_METHODS)} or declares kind: one of {', '.join(METHOD_KINDS)}")
            if method.distill and kind not in DISTILL_KINDS:
                raise ConfigError(f"method {method.name!r}: distill overrides only apply to td3 and farzi methods")
            if kind in DISTILL_KINDS:
                budgets = {(n, L) for part in slices if method.name in part.methods
                           for n in part.budgets for L in part.seq_lens}
                for n, L in sorted(budgets):
                    for dataset in self.datasets:
                        self.distill_config(method, n, L, dataset)


def load_benchmark_config(path: str | Path, overrides: list[str] | None = None) -> BenchmarkConfig:
    """A :class:`BenchmarkConfig` from a YAML file updated by ``key=value`` overrides (``--set``), validated.

    Strings in ``methods`` and ``datasets`` stand for ``{name: ...}``; relative dataset file paths are
    resolved against the config file's folder."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    data = read_settings(p, overrides, "settings (datasets, methods, budgets, ...)")
    for key in ("datasets", "methods"):
        value = data.get(key)
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if value is not None:
            if not isinstance(value, list):
                raise ConfigError(f"{p}: {key!r} must be a list")
            data[key] = [{"name": v} if isinstance(v, str) else v for v in value]
    config = from_dict(BenchmarkConfig, data)
    for d in config.datasets:
        source = d.source or d.name
        if not is_registry_name(source) and not Path(source).is_absolute() and (p.parent / source).exists():
            source = str(p.parent / source)
        d.source = source
    config.validate()
    return config


# -- cells ------------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One learner of the grid; ``key`` is the hash of ``settings``."""

    dataset: str
    method: str
    kind: str
    n: int | None
    seq_len: int | None
    arch: str
    init: str
    seed: int
    settings: dict
    key: str

    @property
    def family(self) -> str:
        return "whole" if self.kind == "whole" else "distill" if self.kind in DISTILL_KINDS else "subset"

    @property
    def label(self) -> str:
        budget = "" if self.n is None else f" n={self.n} L={self.seq_len}"
        return f"{self.dataset} {self.method}{budget} {self.arch} {self.init} seed {self.seed}"

    def header(self) -> dict:
        return {"key": self.key, "dataset": self.dataset, "method": self.method, "kind": self.kind,
                "family": self.family, "n": self.n, "seq_len": self.seq_len, "arch": self.arch, "init": self.init,
                "seed": self.seed}


def settings_key(settings: dict) -> str:
    """A stable hash of resolved settings (16 hex digits)."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def plan_cells(config: BenchmarkConfig, fingerprints: dict[str, str]) -> list[Cell]:
    """Every cell of the grid, in run order (dataset, slice, method, budget, architecture, protocol, seed); a
    cell in several slices appears once."""
    cells: list[Cell] = []
    seen: set[str] = set()
    seeds = range(config.seed, config.seed + config.seeds)
    base = {"max_len": config.max_len, "eval": to_dict(config.eval)}

    def add(cell_args: tuple, settings: dict) -> None:
        key = settings_key(settings)
        if key not in seen:
            seen.add(key)
            cells.append(Cell(*cell_args, settings, key))

    for ds in config.datasets:
        data = {"dataset": ds.name, "fingerprint": fingerprints[ds.name]}
        teacher = _without_device(to_dict(config.teacher_config(config.teacher.model)))
        for part in config.resolved_slices():
            for method in (m for m in config.methods if m.name in part.methods):
                kind = config.kind_of(method)
                if kind == "whole":
                    for arch in part.archs:
                        for seed in seeds:
                            add((ds.name, method.name, kind, None, None, arch, "full-data", seed),
                                {**base, **data, "method": method.name, "kind": kind, "arch": arch, "seed": seed,
                                 "model_options": config.options_for(arch),
                                 "whole": _without_device(to_dict(config.whole_config(arch, seed)))})
                    continue
                for n in part.budgets:
                    for L in part.seq_lens:
                        source = {"teacher": teacher}
                        if kind in DISTILL_KINDS:
                            source["distill"] = _without_device(to_dict(config.distill_config(method, n, L, ds)))
                        for arch in part.archs:
                            for init in part.inits:
                                for seed in seeds:
                                    s = {**base, **data, **source, "method": method.name, "kind": kind, "n": n,
                                         "seq_len": L, "arch": arch, "init": init, "seed": seed,
                                         "model_options": config.options_for(arch),
                                         "training": to_dict(config.training)}
                                    if init == "reference":
                                        s["reference_teacher"] = _without_device(to_dict(config.teacher_config(arch)))
                                    add((ds.name, method.name, kind, n, L, arch, init, seed), s)
    return cells


def read_cell(path: Path) -> dict | None:
    """A finished cell's record, or ``None`` when the file is missing or not a finished cell."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") in FINISHED else None


# -- running ----------------------------------------------------------------------------------------------
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


class _DatasetContext:
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
            start = time.perf_counter()
            teacher = train_teacher(self.dataset, cfg, run, self.progress, self.device, resume=run.is_dir())
            if not timing.is_file():
                write_json(timing, {"train_seconds": time.perf_counter() - start})
            self.teacher_seconds[arch] = _read_json(timing).get("train_seconds", float("nan"))
            self.teachers[arch] = teacher
        return self.teachers[arch]

    def teacher_dir(self, arch: str) -> Path:
        cfg = self.config.teacher_config(arch)
        key = settings_key({"fingerprint": self.dataset.fingerprint(), "teacher": _without_device(to_dict(cfg))})
        return self.results / TEACHERS_DIR / f"{_slug(self.spec.name)}-{arch}-{key[:8]}"

    def item_factor(self) -> torch.Tensor:
        """V: the distillation teacher's item embedding (the shared item factor of the real subsets)."""
        return self.teacher(self.config.teacher.model).model.item_vectors().detach().to(self.device)

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
        from td3rec.distill.distiller import Distiller
        from td3rec.evaluation.suite import summary_source

        run = self.summary_dir(cell)
        metrics = _read_json(run / "metrics.json")
        timing = run / "benchmark_timing.json"
        if metrics.get("status") == "diverged":
            raise DivergedError(metrics.get("message", "distillation diverged"))
        if metrics.get("status") != "finished":
            teacher = self.teacher(self.config.teacher.model)
            config = self.config.distill_config(_method(self.config, cell.method), cell.n, cell.seq_len, self.spec)
            resumed = (run / "resume.pt").is_file()
            log.info("distilling %s %s n=%d L=%d into %s", self.spec.name, cell.method, cell.n, cell.seq_len, run)
            start = time.perf_counter()
            Distiller(self.dataset, config, run_dir=run, teacher_run=teacher.run_dir,
                      progress=self.progress).run(resume=resumed)
            write_json(timing, {"distill_seconds": time.perf_counter() - start, "resumed": resumed})
            metrics = _read_json(run / "metrics.json")
        source = summary_source(str(run / "summary_best.safetensors"), self.dataset, self.device,
                                self.config.training.chunk_size)
        params = metrics.get("summary_parameters")
        facts = {"data_seconds": _read_json(timing).get("distill_seconds"),
                 "data_resumed": _read_json(timing).get("resumed", False),
                 "data_interactions": cell.n * cell.seq_len, "summary_parameters": params,
                 "summary_parameters_with_item_factor": metrics.get("summary_parameters_with_item_factor"),
                 "size_fraction": params / self.dataset.n_interactions if params is not None else None,
                 "summary_dir": str(run)}
        return source, facts


def compute_cell(cell: Cell, ctx: _DatasetContext) -> dict:
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
    contexts: dict[str, _DatasetContext] = {}
    if not compute:
        for spec in config.datasets:  # the teachers trained so far, for the table's cost facts
            ctx = _DatasetContext(config, spec, datasets[spec.name], results, device, progress)
            timing = ctx.teacher_dir(config.teacher.model) / "benchmark_timing.json"
            if timing.is_file():
                ctx.teacher_seconds[config.teacher.model] = _read_json(timing).get("train_seconds", float("nan"))
            contexts[spec.name] = ctx
        status = "finished" if len(records) == len(cells) else "partial"
        rows = _write_table(results, config, cells, records, contexts, status)
        return BenchmarkResult(results, rows, computed=0, reused=reused)
    if len(records) < len(cells):
        _warm_up(device)  # one-off process costs are not charged to whichever cell comes first
    computed = 0
    last_write = time.monotonic()
    complete = False
    bar = tqdm(total=len(cells), initial=reused, desc="benchmark", unit="cell", disable=None if progress else True)
    try:
        for cell in cells:
            if cell.key in records:
                continue
            spec = next(d for d in config.datasets if d.name == cell.dataset)
            if cell.dataset not in contexts:
                contexts[cell.dataset] = _DatasetContext(config, spec, datasets[cell.dataset], results, device,
                                                         progress)
            bar.set_postfix_str(cell.label[:60])
            record = compute_cell(cell, contexts[cell.dataset])
            write_json(results / CELLS_DIR / f"{cell.key}.json", record)
            records[cell.key] = record
            computed += 1
            bar.update(1)
            if on_cell is not None:
                on_cell(record)
            if time.monotonic() - last_write > 5.0:
                _write_table(results, config, cells, records, contexts, "running")
                last_write = time.monotonic()
        complete = True
    finally:
        bar.close()
        if not complete:  # interrupted: keep the table up to date with what finished (best effort)
            try:
                _write_table(results, config, cells, records, contexts, "interrupted")
            except Exception as err:  # noqa: BLE001 - the original exception is the one to report
                log.warning("could not write the results table: %s", err)
    rows = _write_table(results, config, cells, records, contexts, "finished")
    return BenchmarkResult(results, rows, computed=computed, reused=reused)


# -- results table ----------------------------------------------------------------------------------------
def flat_row(record: dict, metric_keys: list[str]) -> dict:
    """A cell record as one flat table row (metrics as ``PROTOCOL:METRIC`` columns)."""
    row = {k: record.get(k) for k in ("dataset", "method", "kind", "family", "n", "seq_len", "arch", "init", "seed")}
    distill = (record.get("settings") or {}).get("distill")
    row["distill_seed"] = distill.get("seed") if isinstance(distill, dict) else None  # (distilled data only)
    row.update({k: record.get(k) for k in ("status", "reason")})
    test = record.get("test") or {}
    for key in metric_keys:
        protocol, _, metric = key.partition(":")
        row[key] = test.get(protocol, {}).get(metric)
    for k in ("train_seconds", "data_seconds", "summary_parameters", "summary_parameters_with_item_factor",
              "data_interactions", "real_interactions", "size_fraction", "key"):
        row[k] = record.get(k)
    return row


def metric_keys(config: BenchmarkConfig) -> list[str]:
    return [f"{p}:{name}@{k}" for p in config.eval.protocols for name in ("HR", "NDCG", "MRR") for k in config.eval.ks]


def _write_table(results: Path, config: BenchmarkConfig, cells: list[Cell], records: dict[str, dict],
                 contexts: dict[str, _DatasetContext], status: str) -> list[dict]:
    keys = metric_keys(config)
    done = [records[c.key] for c in cells if c.key in records]
    rows = [flat_row(r, keys) for r in done]
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else list(flat_row({}, keys))
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    write_text(results / RESULTS_CSV, buffer.getvalue())
    teachers = {}
    for name, ctx in contexts.items():
        for arch, seconds in ctx.teacher_seconds.items():
            teachers[f"{name}/{arch}"] = {"dataset": name, "arch": arch, "train_seconds": seconds,
                                          "run_dir": str(ctx.teacher_dir(arch))}
    previous = _read_json(results / RESULTS_JSON).get("teachers", {})
    write_json(results / RESULTS_JSON, {
        "status": status,
        "cells_total": len(cells), "cells_finished": len(done), "metrics": keys,
        "teachers": {**previous, **teachers}, "config": to_dict(config), "rows": rows,
    })
    return rows


# -- helpers ----------------------------------------------------------------------------------------------
def _load(spec: BenchmarkDataset, data_dir: str | Path | None) -> SequenceDataset:
    config = default_preprocess_config(spec.source)
    overrides = {k: v for k, v in (("k_core", spec.k_core), ("k_core_mode", spec.k_core_mode)) if v is not None}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return load_dataset(spec.source, config=config, data_dir=data_dir, fmt=spec.format)


def _method(config: BenchmarkConfig, name: str) -> BenchmarkMethod:
    return next(m for m in config.methods if m.name == name)


def _merge(base: dict, overrides: dict) -> None:
    """Deep-merge ``overrides`` into ``base`` in place."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _nested(overrides: dict, where: str) -> dict:
    """``{"inner.augment": False}`` -> ``{"inner": {"augment": False}}`` (nested keys pass through)."""
    out: dict = {}
    for key, value in (overrides or {}).items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {key!r} conflicts with another key")
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            _merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


#: settings added after grids were first run, with the value that reproduces the earlier behaviour: left out of a
#: cell's settings (and so of its key) at that value, so that finished cells stay valid
_LATER_DEFAULTS = {"precision": "fp32", "support_size": 0, "support_refresh": 1, "outer_negatives": 0,
                   "time_budget": 0, "inner.negatives": 0}


def _without_device(settings: dict) -> dict:
    """Settings without the device (a result does not depend on where it was computed) and without later-added
    settings (dotted keys reach into nested sections) at their neutral value."""
    out = {k: v for k, v in settings.items() if k != "device"}
    for key, neutral in _LATER_DEFAULTS.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                break
            node[part] = dict(node[part])  # a copy: the caller's settings are not changed
            node = node[part]
        else:
            if leaf in node and node[leaf] == neutral:
                del node[leaf]
    return out


def _unique(names: list[str], what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{what}: {name!r} appears twice; give each entry a distinct name")
        seen.add(name)


def _feature_size(arch: str, n_items: int, max_len: int, options: dict) -> int:
    return build_model(arch, n_items, max_len, **options).hidden_size


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _yaml(config: BenchmarkConfig) -> str:
    from td3rec.config import dump_yaml

    return dump_yaml(config)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (``nan`` for no values)."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))
