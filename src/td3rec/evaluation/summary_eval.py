"""Judging training data (a summary or a real subset) by the learners it trains (DESIGN §5).

For each seed: initialise a learner by the named protocol, train it for a fixed number of steps on the data,
evaluate it on the real validation or test users; report mean and standard deviation over seeds, with the
initialisation protocol named in the result.
"""

from __future__ import annotations

import math
import time
from typing import Iterable

import torch

from td3rec.data.sequences import LeaveOneOutSplit
from td3rec.evaluation.evaluator import EvalConfig, evaluate
from td3rec.evaluation.initialisation import init_learner
from td3rec.evaluation.learner_training import LearnerTrainingConfig, train_learner
from td3rec.evaluation.sources import HardSequences, SoftSequences
from td3rec.models.base import SequentialRecommender


def mean_std(runs: list[dict[str, dict[str, float]]]) -> tuple[dict, dict]:
    """Per protocol and metric: mean and (population) standard deviation over runs."""
    mean: dict = {}
    std: dict = {}
    for protocol in runs[0]:
        mean[protocol], std[protocol] = {}, {}
        for metric in runs[0][protocol]:
            values = [r[protocol][metric] for r in runs]
            m = sum(values) / len(values)
            mean[protocol][metric] = m
            std[protocol][metric] = math.sqrt(sum((v - m) ** 2 for v in values) / len(values))
    return mean, std


def evaluate_sources(
    source: SoftSequences | HardSequences,
    split: LeaveOneOutSplit,
    arch: str,
    protocol: str,
    seeds: Iterable[int],
    which: str,
    max_len: int,
    eval_config: EvalConfig,
    device: torch.device,
    training: LearnerTrainingConfig,
    teacher: SequentialRecommender | None = None,
    model_options: dict | None = None,
) -> dict:
    """Train one learner per seed on ``source`` and evaluate it on ``which`` (valid/test) users.

    Returns ``{"init": protocol, "arch": arch, "mean": ..., "std": ..., "runs": [...], "train_seconds": [...]}``.
    """
    runs, seconds = [], []
    item_factor = source.V
    for seed in seeds:
        model = init_learner(arch, protocol, split.n_items, max_len, seed, teacher=teacher,
                             item_factor=item_factor, model_options=model_options, device=device)
        gen = torch.Generator().manual_seed(10_000 + int(seed))
        start = time.perf_counter()
        train_learner(model, source, training, generator=gen)
        seconds.append(time.perf_counter() - start)
        runs.append(evaluate(model, split, which, max_len, eval_config, device))
    mean, std = mean_std(runs)
    return {"init": protocol, "arch": arch, "mean": mean, "std": std, "runs": runs, "train_seconds": seconds}
