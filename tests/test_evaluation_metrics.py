"""Ranks, metrics and negative sampling against straightforward reference implementations."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from td3rec.data.sequences import LeaveOneOutSplit
from td3rec.evaluation.metrics import compute_metrics, full_ranks, sample_negatives, sampled_ranks


# -- reference implementations (plain Python, deliberately naive) ---------------------------------------
def ref_rank(score: dict[int, float] | list[float], target: int, candidates) -> int:
    """Sort the candidates and the target by score, the target *after* every tie; its position is its rank."""
    items = [c for c in candidates if c != target] + [target]
    ordered = sorted(items, key=lambda i: (-score[i], i == target))
    return ordered.index(target)


def ref_full_ranks(scores: np.ndarray, targets, exclude=None) -> list[int]:
    n_items = scores.shape[1] - 1
    out = []
    for row, target in enumerate(targets):
        removed = set() if exclude is None else {int(i) for i in exclude[row]}
        candidates = [i for i in range(1, n_items + 1) if i not in removed or i == target]
        out.append(ref_rank(list(scores[row]), int(target), candidates))
    return out


def ref_metrics(ranks, ks=(5, 10, 20)) -> dict[str, float]:
    out = {}
    for k in ks:
        hr = ndcg = mrr = 0.0
        for r in ranks:
            if r < k:
                hr += 1
                ndcg += 1 / math.log2(r + 2)
                mrr += 1 / (r + 1)
        out[f"HR@{k}"], out[f"NDCG@{k}"], out[f"MRR@{k}"] = hr / len(ranks), ndcg / len(ranks), mrr / len(ranks)
    return out


def random_case(seed: int, n_rows: int, n_items: int, tied: bool):
    rng = np.random.default_rng(seed)
    if tied:
        scores = rng.integers(0, 4, size=(n_rows, n_items + 1)).astype(np.float32)
    else:
        scores = rng.normal(size=(n_rows, n_items + 1)).astype(np.float32)
    scores[:, 0] = -np.inf
    targets = rng.integers(1, n_items + 1, size=n_rows)
    # histories that sometimes contain the target
    exclude = [rng.choice(np.arange(1, n_items + 1), size=rng.integers(0, n_items // 2), replace=False)
               for _ in range(n_rows)]
    return scores, targets, exclude


# -- full ranking ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_full_ranks_match_reference(seed, tied):
    scores, targets, exclude = random_case(seed, n_rows=25, n_items=40, tied=tied)
    got = full_ranks(torch.from_numpy(scores), torch.from_numpy(targets))
    assert got.dtype == torch.long
    assert got.tolist() == ref_full_ranks(scores, targets)
    got_ex = full_ranks(torch.from_numpy(scores), torch.from_numpy(targets), exclude=exclude)
    assert got_ex.tolist() == ref_full_ranks(scores, targets, exclude)


def test_full_ranks_hand_cases():
    inf = float("inf")
    scores = torch.tensor([
        [-inf, 3.0, 2.0, 1.0, 0.0],  # target 1 is top
        [-inf, 5.0, 5.0, 5.0, 1.0],  # target 2 tied with two others: pessimistic rank 2
        [-inf, 0.0, 9.0, 0.0, 0.0],  # target 4 below item 2 and tied with 1 and 3
        [-inf, 1.0, 2.0, 3.0, 4.0],  # target 1 is last
    ])
    ranks = full_ranks(scores, torch.tensor([1, 2, 4, 1]))
    assert ranks.tolist() == [0, 2, 3, 3]
    m = compute_metrics(ranks[:1])
    assert m["HR@5"] == m["NDCG@5"] == m["MRR@5"] == 1.0


def test_constant_scores_give_worst_rank():
    n_items = 30
    scores = torch.full((6, n_items + 1), 0.25)
    targets = torch.tensor([1, 5, 9, 17, 29, 30])
    assert full_ranks(scores, targets).tolist() == [n_items - 1] * 6
    # with history removed, the worst rank among what is left; the target stays even when listed
    exclude = [[2, 3], [5, 6, 6], [], list(range(1, 31)), [29], [1, 2, 3, 0]]
    expected = [n_items - 1 - len(set(e) - {t, 0}) for e, t in zip(exclude, targets.tolist())]
    assert full_ranks(scores, targets, exclude).tolist() == expected
    m = compute_metrics(full_ranks(scores, targets))
    assert all(v == 0.0 for v in m.values())


def test_padding_column_never_counts():
    scores, targets, _ = random_case(11, n_rows=10, n_items=20, tied=True)
    base = full_ranks(torch.from_numpy(scores), torch.from_numpy(targets))
    for pad in (np.inf, 100.0, 2.0, np.nan):
        s = scores.copy()
        s[:, 0] = pad
        assert full_ranks(torch.from_numpy(s), torch.from_numpy(targets)).tolist() == base.tolist()


def test_exclude_removes_items_but_never_the_target():
    scores = torch.tensor([[-float("inf"), 1.0, 9.0, 8.0, 0.5, 7.0]])
    target = torch.tensor([1])
    assert full_ranks(scores, target).tolist() == [3]  # items 2, 3, 5 above
    assert full_ranks(scores, target, [[2, 3]]).tolist() == [1]
    # listing the target itself changes nothing
    assert full_ranks(scores, target, [[1, 2, 3]]).tolist() == [1]
    assert full_ranks(scores, target, [[1]]).tolist() == [3]


def test_exclude_as_padded_matrix_equals_lists():
    scores, targets, exclude = random_case(5, n_rows=12, n_items=30, tied=True)
    width = max(len(e) for e in exclude)
    padded = torch.zeros((len(exclude), width), dtype=torch.long)
    for row, e in enumerate(exclude):
        padded[row, : len(e)] = torch.as_tensor(e)
    lists = full_ranks(torch.from_numpy(scores), torch.from_numpy(targets), exclude)
    matrix = full_ranks(torch.from_numpy(scores), torch.from_numpy(targets), padded)
    assert lists.tolist() == matrix.tolist()


def test_full_ranks_reject_nan_and_bad_targets():
    scores = torch.randn(3, 6)
    scores[1, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        full_ranks(scores, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="1..5"):
        full_ranks(torch.randn(3, 6), torch.tensor([0, 2, 3]))
    with pytest.raises(ValueError):
        full_ranks(torch.randn(3, 6), torch.tensor([1, 2, 6]))


# -- sampled ranking ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tied", [False, True])
def test_sampled_ranks_match_reference(tied):
    rng = np.random.default_rng(3)
    n = 200
    if tied:
        target, neg = rng.integers(0, 4, size=n).astype(float), rng.integers(0, 4, size=(n, 100)).astype(float)
    else:
        target, neg = rng.normal(size=n), rng.normal(size=(n, 100))
    got = sampled_ranks(torch.from_numpy(target), torch.from_numpy(neg))
    expected = []
    for row in range(n):
        score = {0: target[row], **{j + 1: neg[row, j] for j in range(100)}}  # 0 = target
        expected.append(ref_rank(score, 0, range(1, 101)))
    assert got.tolist() == expected
    # constant scores: the target is last of 101
    assert sampled_ranks(torch.zeros(4), torch.zeros(4, 100)).tolist() == [100] * 4


def test_sampled_ranks_reject_nan():
    with pytest.raises(ValueError, match="NaN"):
        sampled_ranks(torch.tensor([0.1, float("nan")]), torch.zeros(2, 100))
    neg = torch.zeros(2, 100)
    neg[0, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sampled_ranks(torch.tensor([0.1, 0.2]), neg)


# -- metrics --------------------------------------------------------------------------------------------
def test_metrics_hand_computed():
    m = compute_metrics([2])  # third place (e.g. two ties above under the pessimistic rule)
    assert m["HR@5"] == 1.0 and m["NDCG@5"] == pytest.approx(0.5) and m["MRR@5"] == pytest.approx(1 / 3)
    m = compute_metrics([5], ks=(5, 10))
    assert m == pytest.approx({"HR@5": 0.0, "NDCG@5": 0.0, "MRR@5": 0.0,
                               "HR@10": 1.0, "NDCG@10": 1 / math.log2(7), "MRR@10": 1 / 6})
    m = compute_metrics([0, 9, 10, 100], ks=(10,))
    assert m["HR@10"] == 0.5
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(11)) / 4)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 10) / 4)


@pytest.mark.parametrize("seed", range(3))
def test_metrics_match_reference(seed):
    ranks = np.random.default_rng(seed).integers(0, 40, size=500)
    assert compute_metrics(torch.from_numpy(ranks)) == pytest.approx(ref_metrics(ranks.tolist()), abs=1e-12)
    assert list(compute_metrics(ranks, ks=(1, 3))) == ["HR@1", "NDCG@1", "MRR@1", "HR@3", "NDCG@3", "MRR@3"]


def test_metrics_reject_empty_and_negative():
    with pytest.raises(ValueError):
        compute_metrics([])
    with pytest.raises(ValueError):
        compute_metrics([0, -1])


# -- negative sampling ----------------------------------------------------------------------------------
def random_histories(rng: np.random.Generator, n_users: int, n_items: int, max_len: int) -> list[np.ndarray]:
    # repeats allowed, as in real logs
    return [rng.integers(1, n_items + 1, size=rng.integers(1, max_len + 1)) for _ in range(n_users)]


def check_negatives(neg: torch.Tensor, histories, n_items: int, n_negatives: int) -> None:
    assert neg.dtype == torch.long and tuple(neg.shape) == (len(histories), n_negatives)
    arr = neg.numpy()
    assert arr.min() >= 1 and arr.max() <= n_items
    for row, hist in zip(arr, histories):
        assert len(set(row.tolist())) == n_negatives, "negatives repeat within a user"
        assert not set(row.tolist()) & set(np.asarray(hist).tolist()), "a negative was interacted with"


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 30),
    n_items=st.integers(5, 300),
    frac=st.floats(0.0, 1.0),
    strategy=st.sampled_from(["uniform", "popularity"]),
)
def test_negatives_never_interacted_and_unique(seed, n_users, n_items, frac, strategy):
    rng = np.random.default_rng(seed)
    n_negatives = max(1, int(frac * n_items) // 2)
    histories = random_histories(rng, n_users, n_items, max_len=n_items - n_negatives)
    popularity = None
    if strategy == "popularity":  # every item drawable, skewed weights
        popularity = np.concatenate([[0], rng.integers(1, 50, size=n_items)])
    neg = sample_negatives(histories, n_items, n_negatives, strategy, popularity=popularity, seed=seed)
    check_negatives(neg, histories, n_items, n_negatives)


def test_negatives_from_split_exclude_valid_and_test_targets():
    rng = np.random.default_rng(0)
    n_items, n_users = 150, 40
    full = [rng.choice(np.arange(1, n_items + 1), size=rng.integers(3, 50), replace=False) for _ in range(n_users)]
    split = LeaveOneOutSplit(
        train=[s[:-2] for s in full], valid_target=np.array([s[-2] for s in full]),
        test_target=np.array([s[-1] for s in full]), full=full, n_items=n_items,
    )
    for strategy in ("uniform", "popularity"):
        neg = sample_negatives(split, n_negatives=100, strategy=strategy, seed=1)
        check_negatives(neg, full, n_items, 100)


def test_negatives_reproducible_and_seed_dependent():
    rng = np.random.default_rng(1)
    histories = random_histories(rng, 50, 500, 80)
    for strategy in ("uniform", "popularity"):
        a = sample_negatives(histories, 500, strategy=strategy, seed=7)
        b = sample_negatives(histories, 500, strategy=strategy, seed=7)
        c = sample_negatives(histories, 500, strategy=strategy, seed=8)
        assert torch.equal(a, b)
        assert (a != c).any()


def test_too_few_candidates_raise():
    histories = [np.arange(1, 11), np.arange(1, 60)]
    with pytest.raises(ValueError, match="fewer than 100 non-interacted"):
        sample_negatives(histories, 150, 100)
    # exactly enough: the negatives are all the remaining items
    neg = sample_negatives([np.arange(1, 51)], 150, 100, seed=3)
    assert sorted(neg[0].tolist()) == list(range(51, 151))
    # zero-popularity items do not count as drawable
    popularity = np.concatenate([[0], np.ones(100), np.zeros(50)])
    with pytest.raises(ValueError, match="popularity"):
        sample_negatives([np.arange(1, 5)], 150, 100, "popularity", popularity=popularity)


def test_padding_id_never_drawn_whatever_its_weight():
    popularity = np.concatenate([[1e9], np.ones(150)])  # a bogus weight on the padding id
    heavy = [np.arange(1, 140)] * 20  # handed to the exact per-user path
    light = [np.array([1, 2])] * 200
    for histories in (heavy, light):
        for strategy, pop in (("popularity", popularity), ("uniform", None)):
            n_neg = 10
            neg = sample_negatives(histories, 150, n_neg, strategy, popularity=pop, seed=0)
            check_negatives(neg, histories, 150, n_neg)
    with pytest.raises(ValueError, match="fewer than 12"):
        sample_negatives(heavy, 150, 12, "popularity", popularity=popularity)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="outside"):
        sample_negatives([np.array([0, 3])], 200, 10)
    with pytest.raises(ValueError, match="strategy"):
        sample_negatives([np.array([3])], 200, 10, strategy="pop")
    with pytest.raises(ValueError, match="n_items \\+ 1"):
        sample_negatives([np.array([3])], 200, 10, "popularity", popularity=np.ones(200))
    with pytest.raises(ValueError, match="n_items"):
        sample_negatives([np.array([3])], None, 10)


def chi_square(observed: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    expected = probs * observed.sum()
    return float(((observed - expected) ** 2 / expected).sum()), len(probs) - 1


def assert_follows(observed: np.ndarray, probs: np.ndarray) -> None:
    """Chi-square goodness of fit with a generous bound (mean + 6 sd of the chi-square distribution)."""
    stat, df = chi_square(observed, probs)
    assert stat < df + 6 * math.sqrt(2 * df), f"chi-square {stat:.1f} with {df} degrees of freedom"


def test_popularity_sampling_follows_popularity():
    n_items, n_users = 40, 20000
    rng = np.random.default_rng(0)
    popularity = np.concatenate([[0], rng.integers(1, 200, size=n_items)]).astype(float)
    popularity[7] = 0  # never drawn
    history = np.array([1, 2, 3, 3])
    neg = sample_negatives([history] * n_users, n_items, 10, "popularity", popularity=popularity, seed=0).numpy()
    allowed = np.setdiff1d(np.arange(1, n_items + 1), [1, 2, 3, 7])
    assert not np.isin(neg, [1, 2, 3, 7]).any()
    # the first pick of each user is a draw proportional to popularity over the allowed items
    first = np.bincount(neg[:, 0], minlength=n_items + 1)[allowed]
    assert_follows(first, popularity[allowed] / popularity[allowed].sum())
    # and it is not uniform (the test has power)
    stat, df = chi_square(first, np.full(len(allowed), 1 / len(allowed)))
    assert stat > df + 6 * math.sqrt(2 * df)


def test_popularity_default_counts_the_whole_data():
    # item 5 is interacted by many users: it must be the most drawn negative for the others
    histories = [np.array([5, 6])] * 300 + [np.array([1])] * 3000
    neg = sample_negatives(histories, 120, 1, "popularity", seed=0).numpy()
    counts = np.bincount(neg[300:, 0], minlength=121)
    probs = np.bincount(np.concatenate(histories), minlength=121).astype(float)
    probs[1] = 0  # interacted by those users
    probs /= probs.sum()
    drawn = probs > 0
    assert set(np.flatnonzero(counts)) <= set(np.flatnonzero(drawn))
    assert_follows(counts[drawn], probs[drawn])


def test_sampling_without_replacement_inclusion_probabilities():
    # 5 drawable items, 2 negatives: P(i in sample) = p_i + sum_{j != i} p_j p_i / (1 - p_j) (successive sampling)
    p = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    popularity = np.concatenate([[0, 0], p])  # item 1 has weight 0 and is the user's history anyway
    n_users = 40000
    neg = sample_negatives([np.array([1])] * n_users, 6, 2, "popularity", popularity=popularity, seed=4).numpy()
    inclusion = np.array([(neg == item).any(axis=1).mean() for item in range(2, 7)])
    exact = np.array([p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(5) if j != i) for i in range(5)])
    sd = np.sqrt(exact * (1 - exact) / n_users)
    assert np.all(np.abs(inclusion - exact) < 5 * sd), (inclusion, exact)


def test_uniform_sampling_is_uniform():
    n_items, n_users = 60, 30000
    neg = sample_negatives([np.array([4, 9])] * n_users, n_items, 5, "uniform", seed=2).numpy()
    allowed = np.setdiff1d(np.arange(1, n_items + 1), [4, 9])
    assert_follows(np.bincount(neg[:, 0], minlength=n_items + 1)[allowed], np.full(len(allowed), 1 / len(allowed)))
    assert_follows(np.bincount(neg.ravel(), minlength=n_items + 1)[allowed], np.full(len(allowed), 1 / len(allowed)))


def test_heavy_users_use_exact_fallback_and_stay_correct(caplog):
    # users who interacted with almost all the popularity mass: the vectorised sampler hands them to the
    # exact per-user path; results must still be valid and follow popularity over the remaining items
    n_items = 300
    popularity = np.concatenate([[0], np.full(200, 1e6), np.arange(1, 101, dtype=float)])
    histories = [np.arange(1, 201)] * 2000 + [np.arange(150, 181)] * 50
    with caplog.at_level(logging.DEBUG, logger="td3rec.evaluation.metrics"):
        neg = sample_negatives(histories, n_items, 20, "popularity", popularity=popularity, seed=0)
    assert any("fallback" in r.message for r in caplog.records)
    check_negatives(neg, histories, n_items, 20)
    first = np.bincount(neg.numpy()[:2000, 0], minlength=n_items + 1)[201:]
    assert_follows(first, popularity[201:] / popularity[201:].sum())


def _compare_with_numpy_successive_sampling(neg: np.ndarray, allowed: np.ndarray, p: np.ndarray, seed: int):
    """Inclusion frequency of every allowed item matches numpy's choice(replace=False, p=...) (within 5 sd)."""
    n_users, n_neg = neg.shape
    rng = np.random.default_rng(seed)
    ref = np.stack([rng.choice(allowed, size=n_neg, replace=False, p=p) for _ in range(n_users)])
    size = int(allowed.max()) + 1
    ours = np.bincount(neg.ravel(), minlength=size)[allowed] / n_users
    theirs = np.bincount(ref.ravel(), minlength=size)[allowed] / n_users
    sd = np.sqrt((ours * (1 - ours) + theirs * (1 - theirs)) / n_users)
    assert np.all(np.abs(ours - theirs) < 5 * sd + 2e-3)
    return ours


def test_nearly_exhausted_users_match_numpy_successive_sampling(caplog):
    # 130 drawable items left, 120 to draw: handed to the exact per-user path
    n_items, n_users, n_neg = 1000, 2000, 120
    rng = np.random.default_rng(0)
    popularity = np.concatenate([[0], rng.integers(1, 20, size=n_items)]).astype(float)
    history = np.arange(1, 871)
    with caplog.at_level(logging.DEBUG, logger="td3rec.evaluation.metrics"):
        neg = sample_negatives([history] * n_users, n_items, n_neg, "popularity", popularity=popularity, seed=5)
    assert any("fallback" in r.message for r in caplog.records)
    check_negatives(neg, [history] * n_users, n_items, n_neg)
    allowed = np.arange(871, n_items + 1)
    p = popularity[allowed] / popularity[allowed].sum()
    ours = _compare_with_numpy_successive_sampling(neg.numpy(), allowed, p, seed=1)
    # power: the least popular items are left out far more often than the most popular
    assert ours[p.argmin()] < ours[p.argmax()] - 0.1


def test_duplicate_heavy_rows_continue_exactly(caplog):
    # one allowed item holds almost all the mass: the i.i.d. stream is mostly repeats of it, rows run out
    # of stream after the doubling rounds and are finished per user from their partial picks
    n_items, n_users, n_neg = 400, 2000, 100
    rng = np.random.default_rng(2)
    popularity = np.concatenate([[0], rng.integers(1, 6, size=n_items)]).astype(float)
    popularity[400] = 3e4
    history = np.arange(1, 201)
    with caplog.at_level(logging.DEBUG, logger="td3rec.evaluation.metrics"):
        neg = sample_negatives([history] * n_users, n_items, n_neg, "popularity", popularity=popularity, seed=9)
    assert any("fallback" in r.message for r in caplog.records)
    check_negatives(neg, [history] * n_users, n_items, n_neg)
    allowed = np.arange(201, n_items + 1)
    p = popularity[allowed] / popularity[allowed].sum()
    ours = _compare_with_numpy_successive_sampling(neg.numpy(), allowed, p, seed=3)
    assert ours[-1] == 1.0  # the dominant item is always drawn
