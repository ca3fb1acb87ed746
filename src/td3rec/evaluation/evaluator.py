"""Evaluate a learner on the validation or test users of a leave-one-out split (DESIGN §1, §5).

One pass of the model gives every user's full score vector; every protocol is derived from it:

- ``"full"``: the target ranked against all items (the primary, honest number);
- ``"uniN"`` / ``"popN"`` (e.g. ``"uni100"``, ``"pop100"``): the target ranked against N negatives drawn
  uniformly / by popularity from the items the user never interacted with (see
  :func:`~td3rec.evaluation.metrics.sample_negatives`; popularity = counts over the whole data).

Ranks use the pessimistic tie rule of :mod:`td3rec.evaluation.metrics` (ties count against the target).

**Negatives are drawn once and cached** per (split object, strategy, N, seed, ``which``): validating every
epoch reuses the same negatives, so validation curves are not noisy from re-sampling, and results are
reproducible. ``valid`` and ``test`` get *independent* draws (the seed is combined with ``which``): model
selection on validation never sees the exact test negatives. The cache holds the split weakly and treats
it as immutable: build a new split object rather than editing one in place.
"""

from __future__ import annotations

import logging
import re
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from td3rec.data.sequences import LeaveOneOutSplit, evaluation_examples, iterate_batches
from td3rec.errors import ConfigError
from td3rec.evaluation.metrics import DEFAULT_KS, compute_metrics, full_ranks, sample_negatives, sampled_ranks
from td3rec.models.base import SequentialRecommender

logger = logging.getLogger(__name__)

#: the metrics every evaluation computes at each cut-off K (:func:`~td3rec.evaluation.metrics.compute_metrics`)
METRIC_NAMES = ("HR", "NDCG", "MRR")
_SAMPLED = re.compile(r"^(uni|pop)(\d+)$")
_STRATEGY = {"uni": "uniform", "pop": "popularity"}
# stable small integers mixed into the negative-sampling seed
_WHICH_ID = {"valid": 0, "test": 1}
_STRATEGY_ID = {"uniform": 0, "popularity": 1}


@dataclass
class EvalConfig:
    """How to evaluate.

    Attributes:
        ks: cut-offs K of HR@K, NDCG@K, MRR@K.
        protocols: any of ``"full"`` (rank against every item), ``"uni100"`` (100 uniform negatives),
            ``"pop100"`` (100 popularity-weighted negatives); ``"uniN"`` / ``"popN"`` for other N.
        exclude_history: for ``"full"`` only, remove the items of the user's evaluation input history
            (the training sequence, plus the validation target when testing) from the candidates; the
            target itself stays even if it was consumed before. Off by default (DESIGN §1). Sampled
            protocols never need it: their negatives already avoid every interacted item.
        batch_size: users scored per forward pass; scores take ``batch_size x (n_items + 1)`` floats.
        negative_seed: base seed of the sampled negatives (combined with ``which`` and the strategy).
    """

    ks: tuple[int, ...] = DEFAULT_KS
    protocols: tuple[str, ...] = ("full", "uni100")
    exclude_history: bool = False
    batch_size: int = 1024
    negative_seed: int = 0

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        self.protocols = tuple(self.protocols)
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"ks must be positive cut-offs, got {self.ks}")
        if not self.protocols:
            raise ConfigError("protocols must name at least one of 'full', 'uni100', 'pop100'")
        for name in self.protocols:
            parse_protocol(name)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    def check_metric(self, key: str, setting: str) -> None:
        """Refuse a ``PROTOCOL:METRIC@K`` name (the ``setting`` that selects a model or summary) that this
        evaluation does not compute: before any work, rather than a KeyError once the first result is in."""
        protocol, _, metric = str(key).partition(":")
        name, _, k = metric.partition("@")
        if protocol not in self.protocols:
            raise ConfigError(f"{setting} {key!r}: protocol {protocol!r} is not among the evaluated protocols "
                              f"{list(self.protocols)} (eval.protocols); it must look like PROTOCOL:METRIC@K")
        if name not in METRIC_NAMES or not k.isdigit() or int(k) not in self.ks:
            raise ConfigError(f"{setting} {key!r} is not computed: the metric must be {', '.join(METRIC_NAMES)} at "
                              f"one of the cut-offs {list(self.ks)} (eval.ks), e.g. {protocol}:NDCG@{self.ks[-1]}")


def parse_protocol(name: str) -> tuple[str, int] | None:
    """``None`` for ``"full"``; ``(strategy, n_negatives)`` for ``"uniN"`` / ``"popN"``."""
    if name == "full":
        return None
    match = _SAMPLED.match(name)
    if match is None or int(match.group(2)) < 1:
        raise ConfigError(f"unknown evaluation protocol {name!r}; use 'full', 'uni100' or 'pop100' (or uniN/popN)")
    return _STRATEGY[match.group(1)], int(match.group(2))


# -- negatives cache ------------------------------------------------------------------------------------
# id(split) -> (weak reference to the split, {(strategy, n, seed, which): negatives})
_NEGATIVES: dict[int, tuple[weakref.ref, dict[tuple, torch.Tensor]]] = {}


def evaluation_negatives(
    split: LeaveOneOutSplit, which: str, strategy: str = "uniform", n_negatives: int = 100, seed: int = 0
) -> torch.Tensor:
    """The negatives ``[n_users, n_negatives]`` (CPU LongTensor) used for ``which`` users; drawn on first use
    and cached for the lifetime of ``split``. The draw is seeded by ``(seed, which, strategy, n_negatives)``:
    valid and test use independent draws; the same arguments always give the same negatives."""
    if which not in _WHICH_ID:
        raise ValueError(f"which must be 'valid' or 'test', not {which!r}")
    if strategy not in _STRATEGY_ID:
        raise ValueError(f"strategy must be 'uniform' or 'popularity', not {strategy!r}")
    entry = _NEGATIVES.get(id(split))
    if entry is None or entry[0]() is not split:
        key_id = id(split)
        entry = (weakref.ref(split, lambda _ref: _NEGATIVES.pop(key_id, None)), {})
        _NEGATIVES[key_id] = entry
    cache = entry[1]
    key = (strategy, int(n_negatives), int(seed), which)
    if key not in cache:
        rng_seed = [int(seed), _WHICH_ID[which], _STRATEGY_ID[strategy], int(n_negatives)]
        logger.debug("drawing %s negatives x%d for %s users (seed %s)", strategy, n_negatives, which, seed)
        try:
            cache[key] = sample_negatives(split, split.n_items, n_negatives, strategy, seed=rng_seed)
        except ValueError as err:
            raise ConfigError(
                f"sampled evaluation with {n_negatives} negatives is impossible on this data ({err}); "
                "evaluate with full ranking only, e.g. --set eval.protocols=[full]"
            ) from None
    return cache[key]


# -- evaluation -----------------------------------------------------------------------------------------
def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _input_histories(split: LeaveOneOutSplit, which: str) -> list[np.ndarray]:
    """What the model is allowed to know about each user when predicting the ``which`` target."""
    if which == "valid":
        return list(split.train)
    return [np.append(seq, split.valid_target[u]) for u, seq in enumerate(split.train)]


def rank_users(
    model: SequentialRecommender,
    split: LeaveOneOutSplit,
    which: str,
    max_len: int,
    config: EvalConfig | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Pessimistic rank of every user's ``which`` target under every protocol of ``config``.

    Returns ``{protocol: LongTensor[n_users]}`` (CPU, user order): the raw material for the metrics, for
    per-user comparisons and significance tests. The model runs in eval mode under ``torch.no_grad()``;
    its previous train/eval mode is restored afterwards. ``device`` defaults to the model's device (the
    model is not moved).

    Raises:
        ValueError: the model produced NaN scores, or ``which`` is not 'valid'/'test'.
    """
    config = config or EvalConfig()
    device = torch.device(device) if device is not None else _model_device(model)
    examples = evaluation_examples(split, which, max_len)
    protocols = {name: parse_protocol(name) for name in config.protocols}
    negatives = {
        name: evaluation_negatives(split, which, spec[0], spec[1], config.negative_seed).to(device)
        for name, spec in protocols.items()
        if spec is not None
    }
    histories = _input_histories(split, which) if config.exclude_history and "full" in protocols else None

    ranks: dict[str, list[torch.Tensor]] = {name: [] for name in protocols}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for index in iterate_batches(len(examples), config.batch_size, shuffle=False):
                batch = examples.subset(index).trimmed().to(device)
                scores = model.scores(model.features(batch.inputs, batch.lengths))  # [B, n_items + 1]
                if torch.isnan(scores[:, 1:]).any():
                    raise ValueError(f"model produced NaN scores for {which} users {int(index[0])}..{int(index[-1])}")
                for name, spec in protocols.items():
                    if spec is None:
                        exclude = [histories[int(u)] for u in batch.users] if histories is not None else None
                        ranks[name].append(full_ranks(scores, batch.targets, exclude).cpu())
                    else:
                        target_scores = scores.gather(1, batch.targets[:, None]).squeeze(1)
                        negative_scores = scores.gather(1, negatives[name][batch.users])
                        ranks[name].append(sampled_ranks(target_scores, negative_scores).cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(parts) for name, parts in ranks.items()}


def evaluate(
    model: SequentialRecommender,
    split: LeaveOneOutSplit,
    which: str,
    max_len: int,
    config: EvalConfig | None = None,
    device: torch.device | str | None = None,
) -> dict[str, dict[str, float]]:
    """HR@K, NDCG@K, MRR@K of ``model`` on the ``which`` ('valid' or 'test') target of every user.

    Returns ``{protocol: {"HR@10": ..., "NDCG@10": ..., ...}}`` for each protocol of ``config`` (default
    :class:`EvalConfig`: full ranking and uni100). See :func:`rank_users` for how ranks are computed.
    """
    config = config or EvalConfig()
    ranks = rank_users(model, split, which, max_len, config, device)
    return {name: compute_metrics(r, config.ks) for name, r in ranks.items()}
