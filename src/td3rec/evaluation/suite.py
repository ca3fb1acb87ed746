"""Evaluate several kinds of training data (summaries, real subsets, the whole data) across architectures and
initialisation protocols, with several seeds: the table behind ``td3rec evaluate``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from td3rec.config import check_values
from td3rec.data.sequences import LeaveOneOutSplit, SequenceDataset, leave_one_out
from td3rec.errors import ConfigError
from td3rec.evaluation.evaluator import EvalConfig
from td3rec.evaluation.learner_training import LearnerTrainingConfig
from td3rec.evaluation.sources import DecodedSoftSequences, HardSequences, SoftSequences, load_hard_sequences
from td3rec.evaluation.subset_size import data_size
from td3rec.evaluation.summary_eval import evaluate_sources, mean_std
from td3rec.models.base import SequentialRecommender
from td3rec.summary.factors import load_summary_factors
from td3rec.summary.real_subset import FEATURE_METHODS, last_prefix_features, real_subset

log = logging.getLogger(__name__)


@dataclass
class DataSpec:
    """One kind of training data: ``kind`` is summary, sequences (a file of hard sequences, e.g. an export;
    ``fmt`` its format, detected when ``None``), whole, or a real subset (random, longest, popular, herding,
    kcenter; :mod:`td3rec.summary.real_subset`) of ``n`` users, each with their last ``seq_len`` training items
    (``None``: the learners' ``max_len``; :mod:`td3rec.evaluation.subset_size` sizes them like the summary)."""

    kind: str
    path: str | None = None
    n: int = 30
    fmt: str | None = None
    seq_len: int | None = None

    @property
    def label(self) -> str:
        """``summary:FILE``, ``sequences:FILE``, ``whole`` or ``KIND-N`` (the file by its name alone; see
        :func:`data_labels` for labels that tell several same-named files apart)."""
        if self.kind in FILE_KINDS:
            return f"{self.kind}:{Path(self.path).name}"
        if self.kind == "whole":
            return "whole"
        return f"{self.kind}-{self.n}"

    @property
    def long_label(self) -> str:
        """``KIND-NxL``: a subset's label with its sequence length, for two subsets that differ only in it."""
        return self.label if self.kind in FILE_KINDS or self.kind == "whole" or self.seq_len is None \
            else f"{self.label}x{self.seq_len}"


#: kinds of :class:`DataSpec` read from a file (labelled by its path)
FILE_KINDS = ("summary", "sequences")


def data_labels(specs: list[DataSpec]) -> list[str]:
    """One label per spec, all different, never cut: a file is named by the shortest suffix of its path that
    no other file of the same kind shares (``summary:summary_best.safetensors`` alone;
    ``summary:td3/summary_best.safetensors`` and ``summary:farzi/summary_best.safetensors`` together).

    A real subset is ``KIND-N``, or ``KIND-NxL`` when another subset of the same kind and n has another length.
    The same file, subset or ``whole`` given twice is a :class:`~td3rec.errors.ConfigError`: its rows could
    not be told apart.
    """
    parts = {i: Path(spec.path).resolve().parts for i, spec in enumerate(specs) if spec.kind in FILE_KINDS}
    labels = []
    for i, spec in enumerate(specs):
        if spec.kind not in FILE_KINDS:
            other_lengths = any(o.label == spec.label and o.seq_len != spec.seq_len for o in specs)
            labels.append(spec.long_label if other_lengths else spec.label)
            continue
        mine = parts[i]
        others = [parts[j] for j, other in enumerate(specs) if j != i and other.kind == spec.kind]
        if mine in others:
            raise ConfigError(f"{spec.kind} {spec.path} is given twice")
        k = next((k for k in range(1, len(mine)) if all(o[-k:] != mine[-k:] for o in others)), None)
        labels.append(f"{spec.kind}:{'/'.join(mine[-k:]) if k is not None else Path(*mine).as_posix()}")
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise ConfigError(f"{label} is given twice")
        seen.add(label)
    return labels


@dataclass
class SuiteConfig:
    """Settings of an evaluation suite.

    Attributes:
        archs: learner architectures to train on each kind of data.
        inits: initialisation protocols (reference, shared-item-factor, scratch).
        seeds: number of seeds (learners) per cell.
        split: ``test`` (default) or ``valid`` users.
        max_len: learner input length L.
        training: how learners are trained on summaries and subsets.
        whole_epochs / whole_patience: early-stopped full-data training for the Whole baseline.
        eval: metric settings.
    """

    archs: tuple[str, ...] = ("sasrec",)
    inits: tuple[str, ...] = ("reference", "shared-item-factor", "scratch")
    seeds: int = 3
    split: str = "test"
    max_len: int = 50
    training: LearnerTrainingConfig = field(default_factory=LearnerTrainingConfig)
    whole_epochs: int = 200
    whole_patience: int = 10
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        """Reject impossible settings before any work (``td3rec evaluate`` calls it before loading data)."""
        from td3rec.evaluation.initialisation import PROTOCOLS
        from td3rec.models.registry import MODEL_NAMES

        check_values(self)
        self.training.validate()
        for name in ("seeds", "max_len", "whole_epochs", "whole_patience"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.split not in ("test", "valid"):
            raise ConfigError(f"split must be test or valid, not {self.split!r}")
        for what, names, allowed in (("archs", self.archs, MODEL_NAMES), ("inits", self.inits, PROTOCOLS)):
            bad = [name for name in names if name not in allowed]
            if bad or not names:
                raise ConfigError(f"{what} must name some of {', '.join(allowed)}, got {list(names)}")


def summary_source(path: str, dataset: SequenceDataset, device: torch.device,
                   chunk_size: int | None = None) -> SoftSequences | DecodedSoftSequences:
    """Load a summary (TD3, or Farzi with either decoder) checked against ``dataset`` and give it as soft
    training data: :class:`SoftSequences` (TD3; Farzi factorised: ``W = latent · D`` over ``V``) or
    :class:`DecodedSoftSequences` (Farzi with a full decoder)."""
    return load_summary_factors(path, expected_fingerprint=dataset.fingerprint()).source(device, chunk_size)


def check_suite_inputs(dataset: SequenceDataset, specs: list[DataSpec], config: SuiteConfig,
                       teachers: dict[str, SequentialRecommender] | None = None) -> None:
    """Before any learner is trained: every summary reads back (content checked, same data), its sequences fit
    the position table of every learner architecture (``max_len``, the teacher's when one is given), and the
    learners with their evaluation inputs fit in memory."""
    from td3rec.models.registry import max_input_length
    from td3rec.utils.memory import check_learner_memory

    teachers = teachers or {}
    for spec in specs:
        if spec.kind not in ("summary", "sequences", "whole") and spec.seq_len is not None:
            for arch in config.archs:
                limit = max_input_length(arch, config.max_len)
                if limit is not None and spec.seq_len > limit:
                    raise ConfigError(f"the {spec.label} subset's sequences of {spec.seq_len} items are longer than "
                                      f"the {arch} learner accepts (max_len {config.max_len}, its position table); "
                                      f"give --seq-len {limit} or --set max_len={spec.seq_len}")
        if spec.kind != "summary":
            continue
        seq_len = load_summary_factors(spec.path, expected_fingerprint=dataset.fingerprint()).queries.shape[1]
        for arch in config.archs:
            limit = max_input_length(arch, config.max_len)
            if limit is not None and seq_len > limit:
                raise ConfigError(f"summary {spec.path} has sequences of length {seq_len}, longer than the {arch} "
                                  f"learner accepts (max_len {config.max_len}, its position table); evaluate it "
                                  f"with --set max_len={seq_len} (without a teacher of a shorter max_len)")
    for arch in config.archs:
        check_learner_memory(f"evaluating {arch} learners", arch, dataset.n_items, config.max_len,
                             _options(teachers.get(arch)), dataset.n_users)


def run_suite(dataset: SequenceDataset, specs: list[DataSpec], config: SuiteConfig, device: torch.device,
              teachers: dict[str, SequentialRecommender] | None = None) -> list[dict]:
    """One result row per (data, architecture, initialisation), labelled by :func:`data_labels`; inapplicable
    cells are skipped with a reason.

    The ``herding`` and ``kcenter`` subsets select on the features of a teacher: the SASRec one in
    ``teachers`` when there is one, else the first."""
    from td3rec.training.config import TrainConfig
    from td3rec.training.trainer import train_full_data

    labels = data_labels(specs)
    teachers = teachers or {}
    split: LeaveOneOutSplit = leave_one_out(dataset)
    rows: list[dict] = []
    shared_V = None
    for spec in specs:
        if spec.kind == "summary":
            shared_V = summary_source(spec.path, dataset, device).V
            break
    features = None
    if any(spec.kind in FEATURE_METHODS for spec in specs):
        feature_teacher = teachers.get("sasrec") or next(iter(teachers.values()), None)
        if feature_teacher is None:
            raise ConfigError("the herding and kcenter subsets select on teacher features: give --teacher RUN_DIR")
        features = last_prefix_features(feature_teacher, split)
    for spec, label in zip(specs, labels):
        if spec.kind == "whole":
            for arch in config.archs:
                runs, seconds = [], []
                for seed in range(config.seeds):
                    start = time.perf_counter()
                    res = train_full_data(dataset, TrainConfig(model=arch, max_len=config.max_len, seed=seed,
                                                               epochs=config.whole_epochs, patience=config.whole_patience,
                                                               device=str(device), eval=config.eval,
                                                               keep_trajectory=False), progress=False)
                    seconds.append(time.perf_counter() - start)
                    runs.append(res.test if config.split == "test" else res.valid)
                mean, std = mean_std(runs)
                size = {"n": dataset.n_users, "seq_len": None, "positions": int(sum(map(len, split.train)))}
                rows.append({"data": label, **size, "arch": arch, "init": "scratch (full training, early stopping)",
                             "mean": mean, "std": std, "runs": runs, "train_seconds": seconds})
            continue
        if spec.kind == "summary":
            source = summary_source(spec.path, dataset, device)
        elif spec.kind == "sequences":
            source = load_hard_sequences(spec.path, dataset, config.max_len, spec.fmt)
        else:
            source = real_subset(split, spec.kind, spec.n, spec.seq_len or config.max_len, seed=0, features=features)
        size = data_size(source)
        for arch in config.archs:
            teacher = teachers.get(arch)
            for init in config.inits:
                if init == "reference" and teacher is None:
                    log.warning("skipping %s / %s / reference: no %s teacher given", label, arch, arch)
                    continue
                options = _options(teacher)
                if init == "shared-item-factor":
                    V = source.V if spec.kind == "summary" else (shared_V if shared_V is not None else
                        (teacher.item_vectors().detach() if teacher is not None else None))
                    if V is None:
                        log.warning("skipping %s / %s / shared-item-factor: no item factor (give a summary or a teacher)",
                                    label, arch)
                        continue
                    if V.shape[1] != _hidden_size(arch, config, teacher):
                        options = _width_options(arch, options, V.shape[1])
                        if options is None:
                            log.warning("skipping %s / %s / shared-item-factor: V has %d columns and no %s can be "
                                        "built that wide", label, arch, V.shape[1], arch)
                            continue
                        log.info("%s / %s / shared-item-factor: the learner is built %d wide (V's width) instead "
                                 "of %d", label, arch, V.shape[1], _hidden_size(arch, config, teacher))
                    if spec.kind != "summary":
                        source = HardSequences(source.ids, source.full_lengths, V)
                log.info("evaluating %s with %s (%s initialisation, %d seed%s)", label, arch, init, config.seeds,
                         "" if config.seeds == 1 else "s")
                res = evaluate_sources(source, split, arch=arch, protocol=init, seeds=range(config.seeds),
                                       which=config.split, max_len=config.max_len, eval_config=config.eval,
                                       device=device, training=config.training, teacher=teacher,
                                       model_options=options)
                row = {"data": label, **size, **res}
                if options != _options(teacher):  # (a learner of another width than the architecture's own)
                    row.update(model_options=options, learner_width=int(V.shape[1]))
                rows.append(row)
    return rows


def _options(teacher: SequentialRecommender | None) -> dict | None:
    import dataclasses

    return dataclasses.asdict(teacher.config) if teacher is not None else None


def _width_options(arch: str, options: dict | None, width: int) -> dict | None:
    """Learner options of ``arch`` with its item-embedding width set to ``width`` (so that the shared item factor
    V can initialise it); ``None`` when no such learner can be built (e.g. a head count that does not divide it)."""
    from td3rec.models.registry import make_model_config, model_config_class

    wide = {**(options or {}), model_config_class(arch).feature_field: width}
    try:
        make_model_config(arch, **wide)
    except ConfigError:
        return None
    return wide


def _hidden_size(arch: str, config: SuiteConfig, teacher: SequentialRecommender | None) -> int:
    from td3rec.models.registry import build_model

    if teacher is not None:
        return teacher.hidden_size
    return build_model(arch, 2, config.max_len).hidden_size

