"""Preprocessing: k-core against a naive reference, stable chronological sort, id remapping, real counts."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

from td3rec.data import load_dataset
from td3rec.data.preprocess import (PreprocessConfig, chronological_order, k_core_mask, preprocess, token_order,
                                   top_items_mask)
from td3rec.data.readers import RawInteractions, read_interactions
from td3rec.errors import ConfigError, DataError


def naive_k_core(pairs: list[tuple[int, int]], k: int, mode: str) -> set[int]:
    """Reference k-core on interaction indices: plain Python, users and items removed alternately."""
    alive = set(range(len(pairs)))
    if k <= 1:
        return alive
    if mode == "single-pass":
        users = Counter(u for u, _ in pairs)
        items = Counter(i for _, i in pairs)
        return {n for n, (u, i) in enumerate(pairs) if users[u] >= k and items[i] >= k}
    changed = True
    while changed:
        changed = False
        users = Counter(pairs[n][0] for n in alive)
        weak_users = {n for n in alive if users[pairs[n][0]] < k}
        if weak_users:
            alive -= weak_users
            changed = True
        items = Counter(pairs[n][1] for n in alive)
        weak_items = {n for n in alive if items[pairs[n][1]] < k}
        if weak_items:
            alive -= weak_items
            changed = True
    return alive


def _random_codes(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(5, 60)), int(rng.integers(5, 80))
    # skewed popularity so that filtering cascades over several rounds
    users = np.minimum(rng.zipf(1.6, n) - 1, n_users - 1)
    items = np.minimum(rng.zipf(1.4, n) - 1, n_items - 1)
    return users.astype(np.int64), items.astype(np.int64)


@pytest.mark.parametrize("mode", ["iterative", "single-pass"])
@pytest.mark.parametrize("seed", range(12))
def test_k_core_matches_naive_reference(mode: str, seed: int) -> None:
    users, items = _random_codes(seed, 600)
    for k in (0, 2, 3, 5, 8):
        keep, _ = k_core_mask(users, items, k, mode)
        expected = naive_k_core(list(zip(users.tolist(), items.tolist())), k, mode)
        assert set(np.flatnonzero(keep).tolist()) == expected, (k, mode)


@pytest.mark.parametrize("seed", range(6))
def test_iterative_result_is_a_k_core(seed: int) -> None:
    users, items = _random_codes(100 + seed, 2000)
    non_empty = 0
    for k in (2, 3, 5, 10):
        keep, _ = k_core_mask(users, items, k, "iterative")
        if keep.any():
            non_empty += 1
            assert np.bincount(users[keep])[np.unique(users[keep])].min() >= k
            assert np.bincount(items[keep])[np.unique(items[keep])].min() >= k
    assert non_empty >= 2  # the check above is not vacuous


def test_single_pass_and_iterative_differ_where_removal_cascades() -> None:
    # k = 2: removing user 0 and items 2, 3 starts a cascade that only the iterative mode follows
    pairs = [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2), (2, 3)]
    users = np.array([p[0] for p in pairs])
    items = np.array([p[1] for p in pairs])
    single, _ = k_core_mask(users, items, 2, "single-pass")
    iterative, rounds = k_core_mask(users, items, 2, "iterative")
    # single pass: user 0 (1 interaction) and items 2, 3 (1 each) are dropped once -> item 0 keeps user 1
    assert np.flatnonzero(single).tolist() == [1, 2, 3]
    # iterative: then item 0 has 1 interaction, then user 1 has 1, then item 1 has 1, ... everything goes
    assert not iterative.any() and rounds >= 2


def test_chronological_order_is_stable_for_ties_and_missing_timestamps() -> None:
    users = np.array([1, 0, 1, 0, 1, 0])
    times = np.array([5.0, 2.0, 5.0, 1.0, 4.0, 2.0])
    order = chronological_order(users, times)
    # user 0: rows 3 (t=1), then 1 and 5 (t=2, file order); user 1: row 4 (t=4), then 0 and 2 (t=5)
    assert order.tolist() == [3, 1, 5, 4, 0, 2]
    assert chronological_order(users, None).tolist() == [1, 3, 5, 0, 2, 4]


def test_token_order_is_numeric_for_integers_else_lexicographic() -> None:
    tokens = np.array(["10", "9", "2", "010", "100"], dtype=object)
    assert [tokens[i] for i in token_order(tokens)] == ["2", "9", "010", "10", "100"]  # ties by string
    mixed = np.array(["b10", "b9", "a"], dtype=object)
    assert [mixed[i] for i in token_order(mixed)] == ["a", "b10", "b9"]


def _raw(users, items, times=None) -> RawInteractions:
    return RawInteractions(users=np.array(users, dtype=object), items=np.array(items, dtype=object),
                           timestamps=None if times is None else np.array(times, dtype=float), source="mem")


@pytest.mark.parametrize("seed", range(4))
def test_remapping_is_a_bijection_consistent_with_item_tokens(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    users = [f"user{u}" for u in rng.integers(0, 150, n)]
    items = [str(i) for i in rng.integers(0, 400, n)]
    times = rng.integers(0, 50, n).astype(float)
    ds = preprocess(_raw(users, items, times), PreprocessConfig(k_core=3))
    # ids 1..n_items, each used, tokens distinct
    all_ids = np.concatenate(ds.sequences)
    assert all_ids.min() == 1 and all_ids.max() == ds.n_items
    assert len(np.unique(all_ids)) == ds.n_items == len(set(ds.item_tokens.tolist()))
    assert len(set(ds.user_tokens.tolist())) == ds.n_users
    # numeric tokens sorted numerically -> ids increase with the token value
    assert [int(t) for t in ds.item_tokens] == sorted(int(t) for t in ds.item_tokens)
    # mapping back gives exactly the surviving raw interactions (as a multiset), per user in time order
    keep_users, keep_items = set(ds.user_tokens.tolist()), set(ds.item_tokens.tolist())
    survivors = [(u, i, t, r) for r, (u, i, t) in enumerate(zip(users, items, times))
                 if u in keep_users and i in keep_items]
    for user, seq in zip(ds.user_tokens, ds.sequences):
        expected = [i for _, i, _, _ in sorted((x for x in survivors if x[0] == user), key=lambda x: (x[2], x[3]))]
        assert [ds.item_tokens[j - 1] for j in seq] == expected
    assert ds.preprocessing["interactions"] == ds.n_interactions == len(survivors)


@pytest.mark.parametrize("seed", range(6))
def test_top_items_mask_matches_naive_reference(seed: int) -> None:
    _, items = _random_codes(seed, 800)
    tokens = np.array([f"i{c:03d}" for c in range(int(items.max()) + 1)][::-1], dtype=object)  # codes != token order
    counts = Counter(items.tolist())
    for k in (0, 1, 3, 7, len(tokens), len(tokens) + 5):
        ranked = sorted(range(len(tokens)), key=lambda c: (-counts.get(c, 0), tokens[c]))  # ties: token order
        chosen = set(ranked[:k]) if 0 < k < len(tokens) else set(range(len(tokens)))
        assert top_items_mask(items, tokens, k).tolist() == [c in chosen for c in items.tolist()], k


@pytest.mark.parametrize("seed", range(4))
def test_top_items_then_k_core_equals_k_core_of_the_top_items_log(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    users = [f"u{u}" for u in np.minimum(rng.zipf(1.5, n), 120)]
    items = [f"{i}" for i in np.minimum(rng.zipf(1.3, n), 300)]
    times = rng.integers(0, 100, n).astype(float)
    counts = Counter(items)
    top = set(sorted(counts, key=lambda t: (-counts[t], int(t)))[:25])
    ds = preprocess(_raw(users, items, times), PreprocessConfig(k_core=3, top_items=25))
    kept = [(u, i, t) for u, i, t in zip(users, items, times) if i in top]
    expected = preprocess(_raw(*map(list, zip(*kept))), PreprocessConfig(k_core=3))
    assert ds.n_items <= 25 and set(ds.item_tokens.tolist()) <= top
    assert ds.fingerprint() == expected.fingerprint()
    assert ds.preprocessing["top_items"] == 25 and ds.preprocessing["interactions"] == expected.n_interactions


def test_users_below_three_interactions_are_dropped_and_logged(caplog) -> None:
    raw = _raw(["a", "b", "b", "c", "c", "c", "d", "d", "d", "d"], list("xxyxyzxyzw"))
    with caplog.at_level(logging.INFO, logger="td3rec.data.preprocess"):
        ds = preprocess(raw, PreprocessConfig(k_core=0))
    assert ds.user_tokens.tolist() == ["c", "d"]
    assert ds.preprocessing["dropped_short_users"] == 2
    assert any("dropped 2 user(s) with fewer than 3" in r.getMessage() for r in caplog.records)
    # item 'w' only occurs for d, 'x','y','z' for c and d: ids are the sorted tokens
    assert ds.item_tokens.tolist() == ["w", "x", "y", "z"]
    assert [s.tolist() for s in ds.sequences] == [[2, 3, 4], [2, 3, 4, 1]]


def test_preprocessing_record() -> None:
    raw = _raw(list("aaaaabbbbb"), list("xyzwvxyzwv"), list(range(10)))
    ds = preprocess(raw, PreprocessConfig(k_core=2, k_core_mode="single-pass"), name="toy")
    info = ds.preprocessing
    assert ds.name == "toy"
    assert (info["k_core"], info["k_core_mode"], info["min_user_interactions"]) == (2, "single-pass", 3)
    assert (info["raw_users"], info["raw_items"], info["raw_interactions"]) == (2, 5, 10)
    assert (info["users"], info["items"], info["interactions"]) == (2, 5, 10)
    assert info["order"] == "timestamp (stable)"


def test_nothing_left_is_a_data_error() -> None:
    raw = _raw(["a", "b", "c"], ["x", "y", "z"])
    with pytest.raises(DataError, match="nothing left after 5-core iterative filtering.*lower --k-core"):
        preprocess(raw, PreprocessConfig())
    with pytest.raises(DataError, match="no user has 3 or more interactions"):
        preprocess(_raw(["a", "a", "b"], ["x", "y", "x"]), PreprocessConfig(k_core=0))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"k_core": -1}, "k_core must be an integer >= 0"),
    ({"k_core_mode": "once"}, "k_core_mode must be one of iterative, single-pass"),
    ({"min_user_interactions": 2}, "min_user_interactions must be an integer >= 3"),
    ({"top_items": -1}, "top_items must be an integer >= 0"),
])
def test_config_validation(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        PreprocessConfig(**kwargs)


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_ml100k_single_pass_counts(real_file) -> None:
    raw = read_interactions(real_file("ml-100k.inter"))
    assert len(raw) == 100_000
    ds = preprocess(raw, PreprocessConfig(k_core=5, k_core_mode="single-pass"))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1349, 99_287)
    # chronological: every user's timestamps are non-decreasing after the sort
    assert ds.preprocessing["order"] == "timestamp (stable)"


@pytest.mark.realdata
@pytest.mark.parametrize("name, counts", [
    ("Beauty.txt", (22_363, 12_101, 198_502)),
    ("Toys_and_Games.txt", (19_412, 11_924, 167_597)),
])
def test_amazon_5core_counts_and_identity_ids(real_file, name: str, counts: tuple[int, int, int]) -> None:
    path = real_file(name)
    ds = load_dataset(str(path), PreprocessConfig(k_core=5))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == counts
    # the files number items 1..|I| already; sorted-token remapping keeps those ids
    assert ds.item_tokens.tolist() == [str(i) for i in range(1, ds.n_items + 1)]
    first_line = path.read_text().split("\n", 1)[0].split()
    assert ds.user_tokens[0] == first_line[0]
    assert ds.sequences[0].tolist() == [int(t) for t in first_line[1:]]
