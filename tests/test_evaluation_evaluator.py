"""The evaluator against a naive per-user loop with a tiny stub learner."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from td3rec.data.sequences import SequenceDataset, leave_one_out
from td3rec.errors import ConfigError
from td3rec.evaluation import EvalConfig, evaluate, evaluation_negatives, rank_users
from td3rec.models.base import SequentialRecommender

MAX_LEN = 8


class StubModel(SequentialRecommender):
    """Fixed item embedding; features = mean (or sum) of the valid input vectors."""

    def __init__(self, weight: torch.Tensor, reduce: str = "mean") -> None:
        super().__init__(weight.shape[0] - 1, weight.shape[1], MAX_LEN)
        self.item_embedding = nn.Embedding(weight.shape[0], weight.shape[1])
        self.item_embedding.weight.data.copy_(weight)
        self.reduce = reduce
        self.seen_modes: list[tuple[bool, bool]] = []  # (training, grad enabled) at each encode call

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.seen_modes.append((self.training, torch.is_grad_enabled()))
        mask = (torch.arange(inputs.shape[1], device=inputs.device)[None, :] < lengths[:, None]).to(inputs.dtype)
        total = (inputs * mask[:, :, None]).sum(dim=1)
        return total / lengths[:, None].to(inputs.dtype) if self.reduce == "mean" else total


def random_model(n_items: int, seed: int = 0) -> StubModel:
    g = torch.Generator().manual_seed(seed)
    return StubModel(torch.randn(n_items + 1, 6, generator=g))


def tied_model(n_items: int, seed: int = 0) -> StubModel:
    """Integer embeddings in 0..2 of width 2 and summed features: exact integer scores, massive ties."""
    g = torch.Generator().manual_seed(seed)
    return StubModel(torch.randint(0, 3, (n_items + 1, 2), generator=g).float(), reduce="sum")


def make_split(n_users: int = 37, n_items: int = 260, seed: int = 0):
    rng = np.random.default_rng(seed)
    # lengths 3..40, longer than MAX_LEN sometimes; repeats allowed (re-consumption)
    sequences = [rng.integers(1, n_items + 1, size=rng.integers(3, 41)) for _ in range(n_users)]
    dataset = SequenceDataset(
        name="toy", sequences=sequences, user_tokens=np.array([str(u) for u in range(n_users)]),
        item_tokens=np.array([str(i) for i in range(1, n_items + 1)]),
    )
    return leave_one_out(dataset)


# -- naive reference ------------------------------------------------------------------------------------
def ref_rank(score, target: int, candidates) -> int:
    """Position of the target when sorted by score with the target after every tie."""
    items = [c for c in candidates if c != target] + [target]
    ordered = sorted(items, key=lambda i: (-score[i], i == target))
    return ordered.index(target)


def ref_metrics(ranks, ks) -> dict[str, float]:
    out = {}
    for k in ks:
        hits = [r for r in ranks if r < k]
        out[f"HR@{k}"] = len(hits) / len(ranks)
        out[f"NDCG@{k}"] = sum(1 / math.log2(r + 2) for r in hits) / len(ranks)
        out[f"MRR@{k}"] = sum(1 / (r + 1) for r in hits) / len(ranks)
    return out


def naive_ranks(model: StubModel, split, which: str, config: EvalConfig) -> dict[str, list[int]]:
    """One user at a time, float64 NumPy scores, explicit candidate lists."""
    weight = model.item_embedding.weight.detach().double().numpy()
    results: dict[str, list[int]] = {name: [] for name in config.protocols}
    for u in range(split.n_users):
        history = list(split.train[u]) + ([int(split.valid_target[u])] if which == "test" else [])
        target = int(split.valid_target[u] if which == "valid" else split.test_target[u])
        recent = history[-MAX_LEN:]
        feats = weight[recent].sum(axis=0) / (len(recent) if model.reduce == "mean" else 1)
        score = weight @ feats  # index = item id; index 0 is never used below
        for name in config.protocols:
            if name == "full":
                removed = set(history) if config.exclude_history else set()
                candidates = [i for i in range(1, split.n_items + 1) if i not in removed]
            else:
                strategy = {"uni": "uniform", "pop": "popularity"}[name[:3]]
                negs = evaluation_negatives(split, which, strategy, int(name[3:]), config.negative_seed)[u].tolist()
                assert not set(negs) & set(split.full[u].tolist())
                candidates = negs
            results[name].append(ref_rank(score, target, candidates))
    return results


def assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


# -- tests ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["valid", "test"])
@pytest.mark.parametrize("make_model", [random_model, tied_model])
@pytest.mark.parametrize("exclude_history", [False, True])
def test_evaluate_matches_naive_loop(which, make_model, exclude_history):
    split = make_split()
    model = make_model(split.n_items)
    config = EvalConfig(protocols=("full", "uni100", "pop100"), exclude_history=exclude_history, batch_size=10)
    expected = naive_ranks(model, split, which, config)
    # every rank, not only the top-20 metrics, must agree
    ranks = rank_users(model, split, which, MAX_LEN, config, device="cpu")
    assert {name: r.tolist() for name, r in ranks.items()} == expected
    got = evaluate(model, split, which, MAX_LEN, config, device="cpu")
    assert_same(got, {name: ref_metrics(r, config.ks) for name, r in expected.items()})
    # a generous K makes the metrics themselves sensitive to every rank
    wide = EvalConfig(ks=(5, 1000), protocols=config.protocols, exclude_history=exclude_history)
    wide_expected = {name: ref_metrics(r, (5, 1000)) for name, r in expected.items()}
    assert_same(evaluate(model, split, which, MAX_LEN, wide), wide_expected)


def test_metrics_are_not_degenerate():
    # the tied model really produces ties, and results differ across protocols (the test above has power)
    split = make_split()
    model = tied_model(split.n_items)
    ranks = rank_users(model, split, "test", MAX_LEN, EvalConfig(protocols=("full", "uni100")))
    assert ranks["full"].dtype == torch.long and ranks["full"].shape == (split.n_users,)
    assert (ranks["full"] > ranks["uni100"]).any()
    scores = model.scores(model.features(torch.tensor([[1, 2]]), torch.tensor([2])))[0, 1:]
    assert len(torch.unique(scores)) < split.n_items // 10


def test_batch_size_does_not_change_results():
    split = make_split(seed=1)
    model = random_model(split.n_items, seed=1)
    a = evaluate(model, split, "test", MAX_LEN, EvalConfig(protocols=("full", "pop100"), batch_size=1))
    b = evaluate(model, split, "test", MAX_LEN, EvalConfig(protocols=("full", "pop100"), batch_size=4096))
    assert a == b


def test_constant_model_scores_zero():
    split = make_split()
    model = StubModel(torch.ones(split.n_items + 1, 3))
    result = evaluate(model, split, "test", MAX_LEN, EvalConfig(protocols=("full", "uni100", "pop100")))
    for metrics in result.values():
        assert all(v == 0.0 for v in metrics.values())


def test_negatives_cached_and_distinct_between_valid_and_test():
    split = make_split()
    a = evaluation_negatives(split, "valid")
    assert evaluation_negatives(split, "valid") is a  # cached: reused every epoch
    t = evaluation_negatives(split, "test")
    assert tuple(a.shape) == tuple(t.shape) == (split.n_users, 100)
    assert (a != t).any()
    assert (evaluation_negatives(split, "valid", seed=1) != a).any()
    # a fresh but identical split gets the same draw (seeded, not stateful)
    again = make_split()
    assert torch.equal(evaluation_negatives(again, "valid"), a)
    # the sampled protocols of evaluate use exactly these negatives
    model = random_model(split.n_items)
    ranks = rank_users(model, split, "valid", MAX_LEN, EvalConfig(protocols=("uni100",)))["uni100"]
    scores = model.scores(model.features(*_valid_inputs(split)))
    target = scores.gather(1, torch.as_tensor(split.valid_target)[:, None])
    assert ranks.tolist() == (scores.gather(1, a) >= target).sum(1).tolist()


def _valid_inputs(split):
    from td3rec.data.sequences import evaluation_examples

    ex = evaluation_examples(split, "valid", MAX_LEN)
    return ex.inputs, ex.lengths


def test_runs_in_eval_mode_without_grad_and_restores_mode():
    split = make_split()
    model = random_model(split.n_items)
    model.train()
    evaluate(model, split, "valid", MAX_LEN, EvalConfig(batch_size=16))
    assert model.seen_modes and all(mode == (False, False) for mode in model.seen_modes)
    assert len(model.seen_modes) == math.ceil(split.n_users / 16)  # one forward per batch for all protocols
    assert model.training
    model.eval()
    evaluate(model, split, "valid", MAX_LEN)
    assert not model.training


class NaNColumnModel(StubModel):
    """Scores NaN for one item only."""

    def __init__(self, weight: torch.Tensor, nan_item: int) -> None:
        super().__init__(weight)
        self.nan_item = nan_item

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        out = super().scores(features)
        out[:, self.nan_item] = float("nan")
        return out


def test_nan_scores_raise():
    split = make_split()
    weight = torch.randn(split.n_items + 1, 4)
    weight[17] = float("nan")  # NaN features for users who consumed item 17
    with pytest.raises(ValueError, match="NaN"):
        evaluate(StubModel(weight), split, "test", MAX_LEN, EvalConfig(protocols=("uni100",)))
    # a NaN in a column that no user's sampled candidates touch still means a broken model: raise
    split = make_split(n_users=3, n_items=400)
    used = set(evaluation_negatives(split, "test").ravel().tolist()) | set(split.test_target.tolist())
    nan_item = min(set(range(1, split.n_items + 1)) - used)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(NaNColumnModel(torch.randn(split.n_items + 1, 4), nan_item), split, "test", MAX_LEN,
                 EvalConfig(protocols=("uni100",)))


def test_config_validation():
    with pytest.raises(ConfigError):
        EvalConfig(protocols=("full", "uniform"))
    with pytest.raises(ConfigError):
        EvalConfig(protocols=("pop0",))
    with pytest.raises(ConfigError):
        EvalConfig(ks=(0, 5))
    with pytest.raises(ConfigError):
        EvalConfig(batch_size=0)
    assert EvalConfig(protocols=["uni50", "full"]).protocols == ("uni50", "full")
    with pytest.raises(ValueError, match="which"):
        evaluate(random_model(300), make_split(), "train", MAX_LEN)
