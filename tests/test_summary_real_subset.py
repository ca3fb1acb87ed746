"""Real-subset selections against naive and brute-force references on small data: Popular-n (mean item
popularity), herding (greedy mean matching) and greedy k-center on teacher features; the features are the
teacher's on each user's last training prefix; `td3rec evaluate --subset` runs them."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from td3rec.cli import main
from td3rec.data.loading import load_dataset
from td3rec.data.preprocess import PreprocessConfig
from td3rec.data.sequences import LeaveOneOutSplit, leave_one_out
from td3rec.errors import ConfigError
from td3rec.summary.real_subset import herding, k_center, last_prefix_features, real_subset, select_users
from td3rec.training.checkpoint import load_checkpoint


def _split(n_users: int = 12, n_items: int = 9, seed: int = 0) -> LeaveOneOutSplit:
    rng = np.random.default_rng(seed)
    train = [rng.integers(1, n_items + 1, size=int(rng.integers(0, 7))).astype(np.int64) for _ in range(n_users)]
    return LeaveOneOutSplit(train=train, valid_target=np.ones(n_users, dtype=np.int64),
                            test_target=np.ones(n_users, dtype=np.int64), full=train, n_items=n_items)


def _naive_popular(split: LeaveOneOutSplit, n: int) -> list[int]:
    counts: dict[int, int] = {}
    for seq in split.train:
        for item in seq.tolist():
            counts[item] = counts.get(item, 0) + 1
    scored = []
    for u, seq in enumerate(split.train):
        if len(seq) >= 2:
            scored.append((-sum(counts[i] for i in seq.tolist()) / len(seq), u))
    return [u for _, u in sorted(scored)[:n]]


def _dist2(a, b) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b))


def _naive_herding(X: list[list[float]], n: int) -> list[int]:
    mean = [sum(col) / len(X) for col in zip(*X)]
    chosen: list[int] = []
    for t in range(1, n + 1):
        best, best_d = None, math.inf
        for i, x in enumerate(X):
            if i in chosen:
                continue
            avg = [(sum(X[j][c] for j in chosen) + x[c]) / t for c in range(len(x))]
            d = _dist2(avg, mean)
            if d < best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def _naive_k_center(X: list[list[float]], n: int) -> list[int]:
    mean = [sum(col) / len(X) for col in zip(*X)]
    chosen = [min(range(len(X)), key=lambda i: (_dist2(X[i], mean), i))]
    while len(chosen) < n:
        far = max((i for i in range(len(X)) if i not in chosen),
                  key=lambda i: (min(_dist2(X[i], X[c]) for c in chosen), -i))
        chosen.append(far)
    return chosen


def _radius(X: np.ndarray, centers) -> float:
    return float(max(min(np.linalg.norm(x - X[c]) for c in centers) for x in X))


def test_popular_ranks_users_by_mean_item_popularity():
    for seed in range(4):
        split = _split(seed=seed)
        eligible = sum(len(s) >= 2 for s in split.train)
        for n in range(1, eligible + 1):
            assert select_users(split, "popular", n).tolist() == _naive_popular(split, n)


def test_popular_prefers_popular_items_not_long_sequences():
    train = [np.array([1, 1, 1, 2, 3, 4, 5, 6]), np.array([1, 1]), np.array([6, 5]), np.array([1, 2])]
    split = LeaveOneOutSplit(train=train, valid_target=np.ones(4, dtype=np.int64),
                             test_target=np.ones(4, dtype=np.int64), full=train, n_items=6)
    # counts: item 1: 6, items 2, 5, 6: 2, items 3, 4: 1; means: user 0 26/8, user 1 6, user 2 2, user 3 4
    assert select_users(split, "popular", 3).tolist() == [1, 3, 0]
    assert select_users(split, "longest", 1).tolist() == [0]


@pytest.mark.parametrize("seed", range(5))
def test_herding_and_k_center_match_naive_references(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(11, 3))
    for n in range(1, 12):
        assert herding(X, n).tolist() == _naive_herding(X.tolist(), n)
        assert k_center(X, n).tolist() == _naive_k_center(X.tolist(), n)


@pytest.mark.parametrize("seed", range(5))
def test_brute_force_properties(seed):
    rng = np.random.default_rng(10 + seed)
    X = rng.normal(size=(9, 2))
    # one herding pick is the point closest to the mean: the best single-point mean match
    assert herding(X, 1)[0] == int(np.argmin(np.linalg.norm(X - X.mean(0), axis=1)))
    # greedy k-center covers every point within twice the optimal radius (checked over every subset)
    for k in (2, 3, 4):
        optimum = min(_radius(X, c) for c in itertools.combinations(range(len(X)), k))
        greedy = _radius(X, k_center(X, k))
        assert optimum <= greedy <= 2 * optimum + 1e-12
    # every selection is a set of distinct rows
    assert sorted(herding(X, 9).tolist()) == list(range(9)) == sorted(k_center(X, 9).tolist())


def test_feature_selections_use_eligible_users_only():
    split = _split(seed=3)
    eligible = np.flatnonzero([len(s) >= 2 for s in split.train])
    features = np.random.default_rng(0).normal(size=(split.n_users, 4))
    features[[u for u in range(split.n_users) if u not in eligible]] = 100.0  # ineligible: never picked
    for method, reference in (("herding", _naive_herding), ("kcenter", _naive_k_center)):
        chosen = select_users(split, method, 3, features=torch.tensor(features))
        assert chosen.tolist() == eligible[reference(features[eligible].tolist(), 3)].tolist()
    with pytest.raises(ConfigError, match="teacher features"):
        select_users(split, "herding", 3)
    with pytest.raises(ConfigError, match="unknown subset method"):
        select_users(split, "newest", 3)


def test_last_prefix_features_are_the_teachers_features_of_each_user(toy_data, toy_teacher):
    split = leave_one_out(load_dataset(toy_data, PreprocessConfig(k_core=0)))
    teacher, _ = load_checkpoint(toy_teacher / "best.pt")
    teacher.eval()
    features = last_prefix_features(teacher, split, batch_size=7)
    for u in (0, 5, 33):
        prefix = split.train[u][:-1][-teacher.max_len:]
        with torch.no_grad():
            one = teacher.features(torch.tensor([prefix.tolist()]), torch.tensor([len(prefix)]))[0]
        torch.testing.assert_close(features[u], one, rtol=1e-5, atol=1e-6)
    subset = real_subset(split, "kcenter", 5, max_len=4, features=features)
    assert subset.ids.shape == (5, 4) and bool((subset.full_lengths >= 2).all())


def test_evaluate_runs_the_new_subsets(toy_data, toy_teacher, tmp_path, capsys):
    results = tmp_path / "eval.json"
    assert main(["evaluate", "--dataset", str(toy_data), "--k-core", "0", "--subset", "popular", "--subset",
                 "herding", "--subset", "kcenter", "--n", "5", "--teacher", str(toy_teacher), "--init", "scratch",
                 "--seeds", "1", "--steps", "3", "--set", "eval.protocols=[full]", "--json", str(results)]) == 0
    assert [r["data"] for r in json.loads(results.read_text())["rows"]] == ["popular-5", "herding-5", "kcenter-5"]
    code = main(["evaluate", "--dataset", str(toy_data), "--k-core", "0", "--subset", "herding", "--init", "scratch",
                 "--seeds", "1", "--steps", "3", "--set", "eval.protocols=[full]"])
    assert code == 2 and "--teacher" in capsys.readouterr().err
