"""A summary as a cheap proxy for model selection (``td3rec proxy``).

A declared set of learner configurations (architecture + hyper-parameters) is trained twice: once on the summary
for a fixed number of steps (the schedule of :mod:`td3rec.evaluation.learner_training`), once on the full data
with early stopping (:func:`td3rec.training.trainer.train_full_data`). Both are measured on the real
*validation* users; the report says how well the summary's ranking of the configurations matches the full
data's: Spearman and Kendall (tau-b) rank correlations, whether the full-data best configuration is the
summary's top-1 / among its top-k, the overlap of the two top-k sets, the regret of picking the summary's
favourite, and the wall time of both searches.

**Reusing the full-data side.** The full-data side does not depend on the summary and is by far the more
expensive one; :class:`FullFrom` takes it from an earlier report (``td3rec proxy --full-from FILE``) after
checking that it was measured the same way (data, split, ``max_len``, seeds, full-data and eval settings, every
candidate's model, options and overrides), so that a new summary costs only its own search.

**Ties** in the rank correlations get average ranks (Spearman) and the tau-b correction (Kendall), both as
pandas computes them (``DataFrame.corr``); a side whose values are all equal makes the correlation undefined
(``None``). In the top-k agreement, ties count *against* a configuration, as in the ranking metrics: its rank
is ``1 + #(other configurations scoring >= it)``, so a tie at the boundary keeps neither and a constant proxy
selects nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from td3rec.config import from_dict, to_dict
from td3rec.data.sequences import SequenceDataset, leave_one_out
from td3rec.errors import ConfigError
from td3rec.evaluation.evaluator import EvalConfig, evaluation_negatives, parse_protocol
from td3rec.evaluation.initialisation import PROTOCOLS
from td3rec.evaluation.learner_training import LearnerTrainingConfig
from td3rec.evaluation.summary_eval import evaluate_sources, mean_std
from td3rec.models.base import SequentialRecommender
from td3rec.models.registry import make_model_config, max_input_length
from td3rec.summary.factors import load_summary_factors
from td3rec.utils.device import resolve_device

log = logging.getLogger(__name__)

#: initialisation settings of summary-trained learners: ``auto`` or one of the protocols
INIT_CHOICES = ("auto",) + PROTOCOLS
_METRIC_NAMES = ("HR", "NDCG", "MRR")
#: the users both searches are measured on
SPLIT = "valid"


# -- configuration --------------------------------------------------------------------------------------
@dataclass
class FullTrainingConfig:
    """How each candidate is trained on the full data (the fields of ``td3rec train`` a search varies; the
    model, its options, ``max_len``, the seed, the device and the metrics are set by the proxy).

    Attributes:
        mode: ``prefix`` (every prefix is an example, as ``td3rec train``'s default) or ``window`` (windows of
            ``max_len + 1`` items, every position predicted in one pass; ~12x cheaper per epoch).
        epochs: maximum epochs.
        batch_size: examples per step (prefix mode).
        window_batch_size: windows per step (window mode).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        patience: epochs without improvement of ``valid_metric`` before stopping.
        valid_metric: ``PROTOCOL:METRIC`` for early stopping and the best epoch (its protocol must be in
            ``eval.protocols``).
        max_nonfinite_steps: stop (exit code 3) after this many optimiser steps in a row with a non-finite loss.
    """

    mode: str = "prefix"
    epochs: int = 200
    batch_size: int = 2048
    window_batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 0.0
    patience: int = 10
    valid_metric: str = "full:NDCG@10"
    max_nonfinite_steps: int = 5


@dataclass
class ProxyCandidate:
    """One learner configuration of the search.

    Attributes:
        model: architecture: sasrec, gru4rec, narm or bert4rec (required).
        model_options: the learner's settings (``td3rec train``'s ``model_options``, e.g. ``{hidden_size: 64,
            n_layers: 2}``); unset ones keep the model's defaults.
        name: label in tables and JSON (default: the model and its options, e.g. ``sasrec(hidden_size=64)``);
            names must be unique.
        init: initialisation of its summary-trained learners; empty = the config's ``init``.
        summary_training: overrides of the config's ``summary_training`` for this candidate (e.g. ``{lr: 0.01}``).
        full_training: overrides of the config's ``full_training`` for this candidate (e.g. ``{lr: 0.002}``).
    """

    model: str = ""
    model_options: dict = field(default_factory=dict)
    name: str = ""
    init: str = ""
    summary_training: dict = field(default_factory=dict)
    full_training: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``name``, else the model with its options and overrides."""
        if self.name:
            return self.name
        parts = [f"{k}={v}" for k, v in self.model_options.items()]
        parts += [f"summary.{k}={v}" for k, v in self.summary_training.items()]
        parts += [f"full.{k}={v}" for k, v in self.full_training.items()]
        return f"{self.model}({','.join(parts)})" if parts else self.model


@dataclass
class ProxyConfig:
    """A model-selection proxy run: the candidates and how both searches train and measure them.

    Attributes:
        candidates: the learner configurations to rank (at least 2).
        summary_training: schedule of the learners trained on the summary (fixed steps; reference settings).
        full_training: early-stopped full-data training of every candidate.
        init: initialisation of summary-trained learners: ``auto`` (``shared-item-factor`` when the learner's
            feature size equals the width of the summary's item factor V, else ``scratch``),
            ``shared-item-factor``, ``scratch``, or ``reference`` (needs ``--teacher``; only for a candidate
            identical to the teacher; leaks full-data training).
        max_len: learner input length L of both searches (default: the ``max_len`` the summary was distilled
            with, else the teacher's, else 50).
        seeds: learners per candidate and side (seeds ``seed .. seed + seeds - 1``); metrics are averaged and
            times summed over them.
        seed: first seed.
        metrics: ``PROTOCOL:METRIC`` values the two rankings are compared on; the first is the headline.
        top_k: size of the top sets compared (top-1 is always reported too).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        eval: metric settings of both searches (validation users).
    """

    candidates: list[ProxyCandidate] = field(default_factory=list)
    summary_training: LearnerTrainingConfig = field(default_factory=LearnerTrainingConfig)
    full_training: FullTrainingConfig = field(default_factory=FullTrainingConfig)
    init: str = "auto"
    max_len: int | None = None
    seeds: int = 1
    seed: int = 0
    metrics: tuple[str, ...] = ("full:NDCG@10", "uni100:NDCG@10")
    top_k: int = 3
    device: str = "auto"
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        """Reject impossible settings (and every candidate's) before any work starts."""
        if len(self.candidates) < 2:
            raise ConfigError(f"the proxy ranks configurations: give at least 2 candidates, got {len(self.candidates)}")
        if self.init not in INIT_CHOICES:
            raise ConfigError(f"init must be one of {', '.join(INIT_CHOICES)}, not {self.init!r}")
        for name in ("seeds", "top_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_len is not None and self.max_len < 1:
            raise ConfigError(f"max_len must be positive, got {self.max_len}")
        if not self.metrics:
            raise ConfigError("metrics must name at least one PROTOCOL:METRIC, e.g. full:NDCG@10")
        for key in self.metrics:
            _check_metric_key(key, self.eval, "metrics")
        resolve_device(self.device)
        seen: dict[str, int] = {}
        for index, candidate in enumerate(self.candidates):
            label = candidate.label
            if label in seen:
                raise ConfigError(f"candidates[{seen[label]}] and candidates[{index}] are both named {label!r}; "
                                  "give them distinct settings or names")
            seen[label] = index
            self.init_for(index)
            self.summary_training_for(index)
            self.train_config_for(index, self.max_len or 50, self.seed, "cpu").validate()

    def where(self, index: int) -> str:
        return f"candidates[{index}] ({self.candidates[index].label})"

    def init_for(self, index: int) -> str:
        """The init setting of candidate ``index`` (its own, else the config's)."""
        init = self.candidates[index].init or self.init
        if init not in INIT_CHOICES:
            raise ConfigError(f"{self.where(index)}: init must be one of {', '.join(INIT_CHOICES)}, not {init!r}")
        return init

    def summary_training_for(self, index: int) -> LearnerTrainingConfig:
        """The summary schedule of candidate ``index``: ``summary_training`` with its overrides, validated."""
        merged = dict(to_dict(self.summary_training), **self.candidates[index].summary_training)
        config = from_dict(LearnerTrainingConfig, merged, where=f"candidates[{index}].summary_training.")
        where = self.where(index)
        if config.steps < 1 or config.batch_size < 1:
            raise ConfigError(f"{where}: summary_training steps and batch_size must be positive")
        if config.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"{where}: summary_training.optimizer must be adam or sgd, not {config.optimizer!r}")
        if not config.lr > 0 or config.weight_decay < 0:
            raise ConfigError(f"{where}: summary_training needs lr > 0 and weight_decay >= 0")
        if config.chunk_size is not None and config.chunk_size < 1:
            raise ConfigError(f"{where}: summary_training.chunk_size must be positive")
        return config

    def train_config_for(self, index: int, max_len: int, seed: int, device: str):
        """The full-data :class:`~td3rec.training.config.TrainConfig` of candidate ``index`` for ``seed``."""
        from td3rec.training.config import TrainConfig

        candidate = self.candidates[index]
        where = self.where(index)
        if not candidate.model:
            raise ConfigError(f"candidates[{index}]: model is required (sasrec, gru4rec, narm or bert4rec)")
        try:
            make_model_config(candidate.model, **candidate.model_options)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        merged = dict(to_dict(self.full_training), **candidate.full_training)
        full = from_dict(FullTrainingConfig, merged, where=f"candidates[{index}].full_training.")
        config = TrainConfig(model=candidate.model, model_options=dict(candidate.model_options), max_len=max_len,
                             seed=seed, device=device, eval=self.eval, keep_trajectory=False,
                             **dataclasses.asdict(full))
        try:
            config.validate()
        except ConfigError as err:
            raise ConfigError(f"{where}: full_training: {err}") from None
        return config


def load_proxy_config(path: str | Path, overrides: list[str] | None = None) -> ProxyConfig:
    """A :class:`ProxyConfig` from a YAML file updated by ``key=value`` overrides (``--set``), validated."""
    from td3rec.config import read_settings

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    data = read_settings(p, overrides, "settings (candidates, summary_training, ...)")
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise ConfigError(f"{p}: 'candidates' must be a list of mappings (model, model_options, ...), one per "
                          "learner configuration")
    for key in ("metrics",):
        if key in data and not isinstance(data[key], (list, str)):
            raise ConfigError(f"{p}: {key!r} must be a list")
    config = from_dict(ProxyConfig, data)
    config.validate()
    return config


def _check_metric_key(key: str, eval_config: EvalConfig, what: str) -> None:
    protocol, _, metric = key.partition(":")
    name, _, k = metric.partition("@")
    if protocol not in eval_config.protocols:
        raise ConfigError(f"{what}: {key!r}: protocol {protocol!r} is not among eval.protocols "
                          f"{list(eval_config.protocols)}")
    if name not in _METRIC_NAMES or not k.isdigit() or int(k) not in eval_config.ks:
        raise ConfigError(f"{what}: {key!r} must be PROTOCOL:METRIC with METRIC one of HR, NDCG, MRR at one of "
                          f"eval.ks {list(eval_config.ks)}, e.g. full:NDCG@10")


# -- rank statistics --------------------------------------------------------------------------------------
def _check_pair(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y):
        raise ValueError(f"rank correlation of sequences of different lengths ({len(x)} and {len(y)})")
    if any(isinstance(v, float) and math.isnan(v) for v in list(x) + list(y)):
        raise ValueError("rank correlation of NaN values")


def _rank_correlation(x: Sequence[float], y: Sequence[float], method: str) -> float | None:
    """pandas' ``DataFrame.corr`` (``spearman`` or ``kendall``; both computed by pandas itself, without scipy,
    unlike ``Series.corr``); ``None`` when fewer than two values or either side is constant (undefined)."""
    _check_pair(x, y)
    if len(x) < 2:
        return None
    value = float(pd.DataFrame({"x": x, "y": y}, dtype=float).corr(method=method).at["x", "y"])
    return None if math.isnan(value) else max(-1.0, min(1.0, value))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: the Pearson correlation of the average ranks (ties handled); ``None`` when fewer than
    two values or either side is constant (undefined)."""
    return _rank_correlation(x, y, "spearman")


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b: ``(concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))`` over the
    ``n0 = n (n - 1) / 2`` pairs (a pair tied on both sides counts in both tie totals); equals tau-a without
    ties. ``None`` when fewer than two values or either side is constant."""
    return _rank_correlation(x, y, "kendall")


def pessimistic_ranks(values: Sequence[float]) -> list[int]:
    """Rank of each value from the top (1 = best = largest): ``1 + #(other values >= it)``: tied values all
    take the worst rank of their group (pandas' ``rank(method="max")`` from the top); ties count against."""
    return [int(r) for r in pd.Series(values, dtype=float).rank(method="max", ascending=False)]


def top_set(values: Sequence[float], k: int) -> list[int]:
    """Indices whose pessimistic rank is <= ``k``, best first (can hold fewer than ``k`` when ties straddle
    the boundary)."""
    ranks = pessimistic_ranks(values)
    return sorted((i for i, r in enumerate(ranks) if r <= k), key=lambda i: (-values[i], i))


def agreement(proxy: Sequence[float], full: Sequence[float], names: Sequence[str], k: int = 3) -> dict:
    """How well the ``proxy`` values (the summary's) rank the candidates like the ``full``-data values.

    Returns ``spearman``, ``kendall`` (``None`` when undefined), ``best_full`` (the names of the candidates
    with the largest full-data value), ``top1`` (one of them has proxy rank 1), ``best_in_top_k`` (one of them
    has proxy rank <= k), ``top_k_summary`` / ``top_k_full`` (names of rank <= k on each side),
    ``top_k_overlap`` (size of their intersection), ``selected`` (the proxy's pick: largest proxy value, the
    first declared among ties), its full-data value and ``regret`` (best full-data value minus it).
    """
    if not (len(proxy) == len(full) == len(names)) or len(names) < 1:
        raise ValueError("agreement needs one proxy value, one full-data value and one name per candidate")
    best_value = max(full)
    best = [i for i, v in enumerate(full) if v == best_value]
    proxy_ranks = pessimistic_ranks(proxy)
    top_proxy, top_full = top_set(proxy, k), top_set(full, k)
    selected = min(range(len(proxy)), key=lambda i: (-proxy[i], i))
    return {
        "spearman": spearman(proxy, full),
        "kendall": kendall_tau_b(proxy, full),
        "k": k,
        "best_full": [names[i] for i in best],
        "best_full_value": best_value,
        "top1": any(proxy_ranks[i] <= 1 for i in best),
        "best_in_top_k": any(proxy_ranks[i] <= k for i in best),
        "top_k_summary": [names[i] for i in top_proxy],
        "top_k_full": [names[i] for i in top_full],
        "top_k_overlap": len(set(top_proxy) & set(top_full)),
        "selected": names[selected],
        "selected_full_value": full[selected],
        "regret": best_value - full[selected],
        "summary_ranks": proxy_ranks,
        "full_ranks": pessimistic_ranks(full),
    }


def metric_of(metrics: dict, key: str) -> float:
    """``PROTOCOL:METRIC`` looked up in evaluator output."""
    protocol, _, name = key.partition(":")
    return float(metrics[protocol][name])


# -- the run ----------------------------------------------------------------------------------------------
@dataclass
class ProxyResult:
    """Outcome of :func:`run_proxy` (``to_dict()`` is the JSON report).

    Attributes:
        candidates: one dict per candidate: ``name``, ``model``, ``model_options`` (all of the learner's
            settings), ``init`` (the protocol its summary learners used) and ``init_reason``, ``summary``
            and ``full`` (each ``valid`` mean metrics, ``runs`` per seed, ``seconds`` total wall time,
            ``training`` resolved settings; ``full`` also ``test`` and per-run best epochs), ``config`` (what
            a reuse is checked against).
        agreement: per compared metric, the output of :func:`agreement`.
        time: ``summary_search_seconds`` (summary loading + every summary learner, training and validation),
            ``full_search_seconds`` (every full-data training with its per-epoch validation and test) and
            ``speedup`` (their ratio); teacher and distillation cost are not included.
        meta: dataset, summary and settings.
    """

    candidates: list[dict]
    agreement: dict
    time: dict
    meta: dict

    def to_dict(self) -> dict:
        return {**self.meta, "time": self.time, "agreement": self.agreement, "candidates": self.candidates}


def summary_max_len(meta: dict) -> int | None:
    """The ``max_len`` a summary was distilled with (from its metadata), if recorded."""
    value = (meta.get("config") or {}).get("max_len")
    return int(value) if isinstance(value, int) and value > 0 else None


def resolve_init(config: ProxyConfig, index: int, V_width: int, teacher: SequentialRecommender | None,
                 max_len: int) -> tuple[str, str]:
    """(protocol, reason) of candidate ``index``'s summary learners; impossible choices raise ConfigError."""
    candidate = config.candidates[index]
    init = config.init_for(index)
    model_config = make_model_config(candidate.model, **candidate.model_options)
    width = model_config.feature_size
    field_name = type(model_config).feature_field
    if init == "auto":
        if width == V_width:
            return "shared-item-factor", f"auto: {field_name} {width} = width of V"
        return "scratch", f"auto: {field_name} {width} != width of V ({V_width})"
    if init == "shared-item-factor" and width != V_width:
        raise ConfigError(f"{config.where(index)}: shared-item-factor needs {field_name} = {V_width} (the width of "
                          f"the summary's V), not {width}; use init: auto or scratch")
    if init == "reference":
        if teacher is None:
            raise ConfigError(f"{config.where(index)}: init reference needs --teacher RUN_DIR")
        same = (teacher.name == model_config.model_name and teacher.max_len == max_len
                and dataclasses.asdict(teacher.config) == dataclasses.asdict(model_config))
        if not same:
            raise ConfigError(f"{config.where(index)}: init reference starts from the teacher, so it only applies to a "
                              f"candidate identical to it ({teacher.name}, max_len {teacher.max_len}, "
                              f"{dataclasses.asdict(teacher.config)})")
    return init, f"init: {init} set in the config"


def run_proxy(
    dataset: SequenceDataset,
    summary_path: str | Path,
    config: ProxyConfig,
    teacher: SequentialRecommender | None = None,
    progress: bool = False,
    reuse: dict[str, dict] | None = None,
    on_candidate: Callable[[list[dict]], None] | None = None,
    full_from: FullFrom | None = None,
) -> ProxyResult:
    """Train every candidate on the summary and on the full data, compare the two rankings.

    Every setting is checked before any training starts. ``reuse`` maps candidate names to results of an
    earlier run (``ProxyResult.candidates`` entries); one is taken as it is, instead of training, when its
    ``config`` equals the candidate's current one. ``full_from`` (an earlier report) supplies the full-data side
    of every other candidate, which is then trained only on the summary; a report that does not match this run
    is refused (:meth:`FullFrom.rows_for`). ``on_candidate`` is called with the results so far after each
    candidate (e.g. to save partial results).
    """
    config.validate()
    device = resolve_device(config.device)
    load_start = time.perf_counter()
    factors = load_summary_factors(summary_path, expected_fingerprint=dataset.fingerprint())
    summary_meta = factors.metadata
    source = factors.source(device, config.summary_training.chunk_size)
    load_seconds = time.perf_counter() - load_start
    summary_sha256 = _file_sha256(summary_path)
    V_width, seq_len = int(factors.item_factor.shape[1]), int(factors.queries.shape[1])
    max_len = config.max_len or summary_max_len(summary_meta) or (teacher.max_len if teacher is not None else 50)

    # everything is resolved (and every mistake reported) before the first training
    plans = []
    for index, candidate in enumerate(config.candidates):
        init, reason = resolve_init(config, index, V_width, teacher, max_len)
        limit = max_input_length(candidate.model, max_len)
        if limit is not None and seq_len > limit:
            raise ConfigError(f"{config.where(index)}: the summary's sequences have {seq_len} positions but "
                              f"{candidate.model} with max_len {max_len} reads at most {limit}; "
                              f"set max_len >= {seq_len}")
        training = config.summary_training_for(index)
        full_configs = [config.train_config_for(index, max_len, seed, str(device)) for seed in _seeds(config)]
        model_options = dataclasses.asdict(make_model_config(candidate.model, **candidate.model_options))
        plan_config = {"model": candidate.model, "model_options": model_options, "init": init,
                       "summary_training": to_dict(training), "max_len": max_len, "seeds": list(_seeds(config)),
                       "full_training": {k: v for k, v in to_dict(full_configs[0]).items()
                                         if k not in ("seed", "device")},
                       "summary_sha256": summary_sha256, "dataset_fingerprint": dataset.fingerprint()}
        plans.append((candidate, init, reason, training, full_configs, model_options, plan_config))
    reused_full = {} if full_from is None else full_from.rows_for(
        dataset, config, max_len, {plan[0].label: plan[-1] for plan in plans}, str(device))

    split = leave_one_out(dataset)
    for protocol in config.eval.protocols:  # impossible sampled protocols fail here, before any training
        spec = parse_protocol(protocol)
        if spec is not None:
            evaluation_negatives(split, "valid", spec[0], spec[1], config.eval.negative_seed)
    _warm_up(device)
    results: list[dict] = []
    for index, (candidate, init, reason, training, full_configs, model_options, plan_config) in enumerate(plans):
        label = candidate.label
        previous = (reuse or {}).get(label)
        if previous is not None and previous.get("config") == plan_config:
            log.info("candidate %d/%d %s: reusing the earlier result", index + 1, len(plans), label)
            results.append(previous)
            if on_candidate is not None:
                on_candidate(results)
            continue
        log.info("candidate %d/%d %s: %d summary learner(s), %s initialisation (%s)", index + 1, len(plans), label,
                 config.seeds, init, reason)
        start = time.perf_counter()
        summary_res = evaluate_sources(source, split, arch=candidate.model, protocol=init, seeds=_seeds(config),
                                       which=SPLIT, max_len=max_len, eval_config=config.eval, device=device,
                                       training=training, teacher=teacher if init == "reference" else None,
                                       model_options=model_options)
        summary_seconds = time.perf_counter() - start
        row = {
            "name": label, "model": candidate.model, "model_options": model_options, "init": init,
            "init_reason": reason,
            "summary": {"valid": summary_res["mean"], "valid_std": summary_res["std"], "runs": summary_res["runs"],
                        "train_seconds": summary_res["train_seconds"], "seconds": summary_seconds,
                        "training": to_dict(training)},
        }
        earlier = reused_full.get(label)
        if earlier is None:
            row["full"] = _train_full_side(dataset, full_configs, plan_config["full_training"], progress)
        else:  # measured when that report was made; its origin is kept when it was itself reused
            row["full"] = earlier["full"]
            row["full_from"] = earlier.get("full_from") or full_from.path
        row["config"] = plan_config
        key = config.metrics[0]
        log.info("candidate %d/%d %s: %s summary %.4f (%.1fs), full data %.4f (%.1fs, best epoch %s%s)",
                 index + 1, len(plans), label, key, metric_of(row["summary"]["valid"], key), summary_seconds,
                 metric_of(row["full"]["valid"], key), row["full"]["seconds"],
                 ",".join(str(r["best_epoch"]) for r in row["full"]["runs"]),
                 f"; reused from {row['full_from']}" if "full_from" in row else "")
        results.append(row)
        if on_candidate is not None:
            on_candidate(results)

    names = [r["name"] for r in results]
    agree = {key: agreement([metric_of(r["summary"]["valid"], key) for r in results],
                            [metric_of(r["full"]["valid"], key) for r in results], names, config.top_k)
             for key in config.metrics}
    summary_total = load_seconds + sum(r["summary"]["seconds"] for r in results)
    full_total = sum(r["full"]["seconds"] for r in results)
    timing = {"summary_load_seconds": load_seconds, "summary_search_seconds": summary_total,
              "full_search_seconds": full_total, "speedup": full_total / summary_total if summary_total > 0 else None}
    meta = {
        "dataset": dataset.name, "fingerprint": dataset.fingerprint(), "summary": str(summary_path),
        "summary_sha256": summary_sha256,
        "summary_info": {"method": summary_meta.get("method"), "epoch": summary_meta.get("epoch"),
                         "factor_shapes": summary_meta.get("factor_shapes"),
                         "teacher_model": summary_meta.get("teacher_model")},
        "split": SPLIT, "max_len": max_len, "device": str(device), "headline_metric": config.metrics[0],
        "settings": to_dict(config), "full_from": None if full_from is None else full_from.path,
    }
    return ProxyResult(candidates=results, agreement=agree, time=timing, meta=meta)


def _train_full_side(dataset: SequenceDataset, full_configs: list, training: dict, progress: bool) -> dict:
    """The ``full`` entry of a candidate: one early-stopped learner per seed, measured on the validation users
    (mean and std) and the test users (mean), with best epochs and wall times."""
    from td3rec.training.trainer import train_full_data

    runs = []
    for train_config in full_configs:
        start = time.perf_counter()
        res = train_full_data(dataset, train_config, run_dir=None, progress=progress)
        runs.append({"seed": train_config.seed, "valid": res.valid, "test": res.test, "best_epoch": res.best_epoch,
                     "epochs_run": len(res.history), "seconds": time.perf_counter() - start})
        del res
    valid_mean, valid_std = mean_std([r["valid"] for r in runs])
    test_mean, _ = mean_std([r["test"] for r in runs])
    return {"valid": valid_mean, "valid_std": valid_std, "test": test_mean, "runs": runs,
            "seconds": sum(r["seconds"] for r in runs), "training": training}


def _warm_up(device: torch.device) -> None:
    """Pay one-off process costs (the optimiser's first import pulls in torch._dynamo, ~2 s; the CUDA
    context) before any timing, so that they are not charged to whichever candidate happens to be first."""
    param = torch.zeros(1, device=device, requires_grad=True)
    torch.optim.Adam([param], lr=0.001)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seeds(config: ProxyConfig) -> range:
    return range(config.seed, config.seed + config.seeds)


def _file_sha256(path: str | Path) -> str:
    """Content hash of the summary file: what identifies it for reuse checks (a copied file is the same)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- an earlier report -----------------------------------------------------------------------------------
def read_proxy_report(path: str | Path, option: str) -> dict:
    """A report written by ``td3rec proxy --json`` (or the benchmark), finished or not: a mapping with a
    ``candidates`` list of named results. Anything else is a ConfigError naming ``option``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{option}: {p} {'is not a file' if p.exists() else 'does not exist'}")
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        report = None
    rows = report.get("candidates") if isinstance(report, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in rows):
        raise ConfigError(f"{option}: {p} is not a td3rec proxy report (the JSON of td3rec proxy --json)")
    return report


@dataclass
class FullFrom:
    """The full-data side of an earlier, finished proxy report, reused instead of trained (``--full-from``).

    Attributes:
        path: the report file, as given (recorded in the new report).
        report: its content.
    """

    path: str
    report: dict

    @classmethod
    def load(cls, path: str | Path, output: str | Path | None = None) -> FullFrom:
        """Read and check the report at ``path``; ``output`` (the report this run writes) must be another file,
        since writing it would destroy the results being reused (an interrupted run could not resume)."""
        where = f"--full-from {path}"
        if output is not None and Path(output).resolve() == Path(path).resolve():
            raise ConfigError(f"{where} is the report this run writes: it would be overwritten; write the new "
                              "report to another file")
        report = read_proxy_report(path, "--full-from")
        if report.get("status") != "finished":
            raise ConfigError(f"{where} is an unfinished proxy report (status {report.get('status')!r}); finish it "
                              "first (--resume) or give a finished one")
        settings = report.get("settings")
        complete = (all(key in report for key in ("fingerprint", "split", "max_len"))
                    and isinstance(settings, dict) and all(key in settings for key in ("seeds", "seed"))
                    and all(isinstance(settings.get(key), dict) for key in ("full_training", "eval"))
                    and all(isinstance(r.get("config"), dict) and isinstance(r.get("full"), dict)
                            and all(key in r["full"] for key in ("valid", "test", "runs", "seconds"))
                            for r in report["candidates"]))
        if not complete:
            raise ConfigError(f"{where} is not a finished td3rec proxy report (fingerprint, split, max_len, "
                              "settings or the candidates' full-data results are missing)")
        return cls(str(path), report)

    def rows_for(self, dataset: SequenceDataset, config: ProxyConfig, max_len: int, plan_configs: dict[str, dict],
                 device: str) -> dict[str, dict]:
        """The earlier result of every candidate (name -> its report entry), after checking that its full-data
        side was measured exactly as this run would measure it; any difference is a ConfigError naming it.
        ``plan_configs`` maps each candidate's name to its resolved ``config`` (:func:`run_proxy`). Candidates
        of the report that this run does not have are ignored."""
        report, where = self.report, f"--full-from {self.path}"
        if report["fingerprint"] != dataset.fingerprint():
            raise ConfigError(f"{where} was made on other data (dataset {report.get('dataset')!r}, fingerprint "
                              f"{str(report['fingerprint'])[:12]}) than {dataset.name!r} (fingerprint "
                              f"{dataset.fingerprint()[:12]}); use the same dataset and preprocessing")
        if report["split"] != SPLIT:
            raise ConfigError(f"{where} was measured on the {report['split']!r} users, this run on {SPLIT!r}")
        if report["max_len"] != max_len:
            raise ConfigError(f"{where} was made with max_len {report['max_len']}, this run uses {max_len} "
                              f"(set max_len: {report['max_len']} to match)")
        settings = report["settings"]
        if (settings["seeds"], settings["seed"]) != (config.seeds, config.seed):
            raise ConfigError(f"{where} trained {settings['seeds']} seed(s) from seed {settings['seed']}, this run "
                              f"{config.seeds} from seed {config.seed} (settings seeds and seed)")
        for key, ours in (("full_training", config.full_training), ("eval", config.eval)):
            differences = _differences(_as_json(to_dict(ours)), settings[key], f"{key}.")
            if differences:
                raise ConfigError(f"{where} has other {key} settings than this run: {differences}")
        rows = {row["name"]: row for row in report["candidates"]}
        for name, plan_config in plan_configs.items():
            if name not in rows:
                raise ConfigError(f"{where} has no candidate {name!r} (it has {', '.join(map(repr, rows))}); add it "
                                  "there or remove it here")
            differences = _differences(_full_side(plan_config), _full_side(rows[name]["config"]))
            if differences:
                raise ConfigError(f"{where}: candidate {name!r} has other settings there: {differences}")
        seeds = list(_seeds(config))
        for name in plan_configs:  # the numbers reused are checked like settings: before any training
            _check_full_side(rows[name].get("full"), f"{where}: candidate {name!r}: full", config.metrics, seeds)
        if report.get("device") != device:
            log.warning("%s: its full-data side ran on %s, this run's summary side runs on %s: compare the times "
                        "with care", where, report.get("device"), device)
        log.info("%s: the full-data side of %d candidate(s) is reused, measured when that report was made",
                 where, len(plan_configs))
        return {name: rows[name] for name in plan_configs}


def _check_full_side(full: object, where: str, metrics: Sequence[str], seeds: list[int]) -> None:
    """A reused full-data side must be what :func:`_train_full_side` writes: finite metrics (every headline
    metric among them) for the mean, the test users and each run, one run per seed of this run in order, whole
    best epochs and non-negative, finite seconds. Anything else is a ConfigError naming the entry."""
    if not isinstance(full, dict):
        raise ConfigError(f"{where} is not a mapping of results")
    for part in ("valid", "test"):
        _check_metrics(full.get(part), f"{where}.{part}", metrics if part == "valid" else ())
    if "valid_std" in full:
        _check_metrics(full["valid_std"], f"{where}.valid_std", ())
    _check_seconds(full.get("seconds"), f"{where}.seconds")
    runs = full.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ConfigError(f"{where}.runs is not a list of runs")
    found = [r.get("seed") for r in runs]
    if found != seeds:
        raise ConfigError(f"{where}.runs has the seeds {found}, this run trains {seeds}")
    for index, run in enumerate(runs):
        at = f"{where}.runs[{index}]"
        for part in ("valid", "test"):
            _check_metrics(run.get(part), f"{at}.{part}", metrics if part == "valid" else ())
        epoch = run.get("best_epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigError(f"{at}.best_epoch is {json.dumps(epoch)}, not a whole number of epochs")
        _check_seconds(run.get("seconds"), f"{at}.seconds")


def _check_metrics(value: object, where: str, required: Sequence[str]) -> None:
    """``value`` is ``{protocol: {metric: finite number}}`` holding every ``PROTOCOL:METRIC`` of ``required``."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{where} is not a mapping of protocols to metrics")
    for protocol, numbers in value.items():
        for metric, number in numbers.items():
            if not _finite(number):
                raise ConfigError(f"{where}.{protocol}.{metric} is {json.dumps(number)}, not a finite number")
    for key in required:
        protocol, _, metric = key.partition(":")
        if metric not in value.get(protocol, {}):
            raise ConfigError(f"{where} has no {key}, which this run compares")


def _check_seconds(value: object, where: str) -> None:
    if not _finite(value) or value < 0:
        raise ConfigError(f"{where} is {json.dumps(value)}, not a non-negative, finite time in seconds")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _full_side(plan_config: dict) -> dict:
    """What in a candidate's ``config`` decides its full-data results: the model with its resolved options,
    max_len, the seeds, the data and the resolved full-data training (its ``model_options`` as written are left
    out: the resolved ones decide, and ``{}`` and the defaults spelt out train the same learner)."""
    full_training = {k: v for k, v in (plan_config.get("full_training") or {}).items() if k != "model_options"}
    keys = ("model", "model_options", "max_len", "seeds", "dataset_fingerprint")
    return _as_json({**{key: plan_config.get(key) for key in keys}, "full_training": full_training})


def _as_json(value):
    """``value`` as it reads back from JSON (tuples become lists), so that it compares with a loaded report."""
    return json.loads(json.dumps(value))


def _differences(ours: dict, theirs: dict, prefix: str = "") -> str:
    """The (nested) settings that differ, e.g. ``full_training.lr 0.002 here, 0.001 there``; empty if none."""
    found = []
    for key in list(ours) + [k for k in theirs if k not in ours]:
        a, b = ours.get(key, "unset"), theirs.get(key, "unset")
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, f"{prefix}{key}.")
            found += [inner] if inner else []
        elif a != b:
            found.append(f"{prefix}{key} {json.dumps(a)} here, {json.dumps(b)} there")
    return "; ".join(found)


# -- text ---------------------------------------------------------------------------------------------------
def format_report(report: dict) -> str:
    """The proxy report as a text table (one line per candidate) followed by the agreement and the times."""
    metrics = list(report["agreement"])
    head_cells = [f"sum {m}" for m in metrics] + [f"full {m}" for m in metrics]
    width = max(12, *(len(c) for c in head_cells))
    name_w = max(20, *(len(r["name"]) for r in report["candidates"]))
    head = (f"{'candidate':<{name_w}} {'init':<18} " + " ".join(f"{c:>{width}}" for c in head_cells)
            + f" {'rank sum/full':>13} {'sum s':>8} {'full s':>9}")
    lines = [head, "-" * len(head)]
    first = report["agreement"][metrics[0]]
    for i, r in enumerate(report["candidates"]):
        cells = [f"{metric_of(r['summary']['valid'], m):.4f}" for m in metrics]
        cells += [f"{metric_of(r['full']['valid'], m):.4f}" for m in metrics]
        ranks = f"{first['summary_ranks'][i]}/{first['full_ranks'][i]}"
        lines.append(f"{r['name']:<{name_w}} {r['init']:<18} " + " ".join(f"{c:>{width}}" for c in cells)
                     + f" {ranks:>13} {seconds(r['summary']['seconds']):>8} {seconds(r['full']['seconds']):>9}")
    lines.append(f"(validation users; sum = trained on the summary, full = on the full data; ranks by {metrics[0]}, "
                 "ties count against)")
    lines.append("")
    for key, a in report["agreement"].items():
        k = a["k"]
        lines.append(f"{key}: Spearman {_num(a['spearman'])}, Kendall tau-b {_num(a['kendall'])}; "
                     f"full-data best {', '.join(a['best_full'])}: summary top-1 {'yes' if a['top1'] else 'no'}, "
                     f"in summary top-{k} {'yes' if a['best_in_top_k'] else 'no'}; top-{k} overlap "
                     f"{a['top_k_overlap']}/{k}; summary picks {a['selected']} (regret {a['regret']:.4f})")
    t = report["time"]
    speedup = "n/a" if t["speedup"] is None else f"{t['speedup']:.1f}x"
    lines.append(f"time: summary search {seconds(t['summary_search_seconds'])} s, full-data search "
                 f"{seconds(t['full_search_seconds'])} s, speed-up {speedup} (teacher and distillation not included)")
    note = full_from_note(report)
    if note:
        lines.append(note)
    return "\n".join(lines)


def full_from_note(report: dict) -> str:
    """One sentence saying which candidates' full-data side was reused from an earlier report (``--full-from``)
    and that its times are those measured then; empty when every candidate was trained in this run."""
    rows = report["candidates"]
    origins = sorted({r["full_from"] for r in rows if r.get("full_from")})
    if not origins:
        return ""
    count = sum(1 for r in rows if r.get("full_from"))
    return (f"full-data side of {count} of {len(rows)} candidates reused from {', '.join(origins)} (not trained in "
            "this run): its metrics, best epochs and seconds are those measured when that report was made")


def seconds(value: float) -> str:
    """Seconds with two decimals below 10 s, one below 1000 s, none above."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"
