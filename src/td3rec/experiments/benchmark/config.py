"""The comparison grid's declaration (``td3rec benchmark CONFIG.yaml``): its datasets, methods, budgets,
architectures, protocols and seeds, and the settings every cell shares; read from YAML with ``--set`` overrides,
each method's distillation settings resolved (grid, then dataset, then method overrides) and every setting
checked before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from td3rec.config import from_dict, read_settings, to_dict
from td3rec.data.loading import is_registry_name
from td3rec.distill.config import DistillConfig
from td3rec.errors import ConfigError
from td3rec.evaluation.evaluator import EvalConfig
from td3rec.evaluation.initialisation import PROTOCOLS
from td3rec.evaluation.learner_training import LearnerTrainingConfig
from td3rec.experiments.proxy import FullTrainingConfig
from td3rec.models.registry import MODEL_NAMES, make_model_config, max_input_length
from td3rec.summary.real_subset import SUBSET_METHODS
from td3rec.training.config import TrainConfig
from td3rec.utils.device import resolve_device

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
        top_items: keep only the this many most frequent items before the k-core filter (default: every item),
            e.g. a large catalogue cut to a size where the exact distillation settings are affordable.
        distill: overrides of the grid's ``distill`` settings for this dataset's distillations (nested or dotted,
            as a method's), e.g. fewer outer epochs on a dataset with many more users per epoch; a method's own
            overrides apply on top.
    """

    name: str = ""
    source: str = ""
    format: str | None = None
    k_core: int | None = None
    k_core_mode: str | None = None
    top_items: int | None = None
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
        # the teacher's architecture, unless the method distils through several (its distill section's model)
        model = _nested(method.distill, f"methods[{method.name}].distill").get("model") or self.teacher.model
        data.update(method=kind, n_sequences=n, seq_len=seq_len, model=model, max_len=self.max_len,
                    device=self.device, eval=to_dict(self.eval))
        if data.get("window") == "inner_steps":
            data["window"] = data.get("inner_steps", self.distill.inner_steps)
        data["inner"]["batch_size"] = min(int(data["inner"]["batch_size"]), n)
        config = from_dict(DistillConfig, data, where=f"methods[{method.name}].distill.")
        try:
            config.validate()
            for arch in config.architectures:
                config.check_learner(arch, self.max_len)
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


# -- helpers ----------------------------------------------------------------------------------------------


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


def _unique(names: list[str], what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{what}: {name!r} appears twice; give each entry a distinct name")
        seen.add(name)
