"""From a raw interaction table to chronological per-user item sequences.

Steps, in order (:func:`preprocess`):

0. optionally, only the ``top_items`` most frequent items are kept (:func:`top_items_mask`), e.g. to cut a
   large catalogue down to a size where exact settings are affordable;
1. k-core filtering of users and items (:func:`k_core_mask`), iterative or single-pass;
2. stable chronological sort inside every user (:func:`chronological_order`): ties, and files without
   timestamps, keep the file order;
3. users with fewer than ``min_user_interactions`` interactions are dropped (leave-one-out needs a
   training item, a validation target and a test target);
4. ids are remapped deterministically (:func:`token_order`): users and items are numbered in the order of
   their sorted raw tokens (numerically when every token is an integer, else as strings), items from 1
   (0 = padding). Sorting makes the numbering independent of the row order of the file; on the S3Rec-style
   Amazon files, whose ids are 1..|I| already, it is the identity.

Repeated (user, item) interactions are kept: sequential recommenders see re-consumption as it happened, and
every count (k-core included) counts interactions, as RecBole does.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from td3rec.data.readers import RawInteractions
from td3rec.data.sequences import SequenceDataset
from td3rec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

K_CORE_MODES = ("iterative", "single-pass")


@dataclass
class PreprocessConfig:
    """How a raw interaction log becomes user sequences.

    Attributes:
        k_core: keep only users and items with at least this many interactions; 0 (or 1) turns the filter
            off. Default 5, the usual setting for these benchmarks.
        k_core_mode: ``"iterative"`` repeats the filter until every remaining user and item has at least
            ``k_core`` interactions (a true k-core); ``"single-pass"`` counts users and items once on the raw
            data and drops both at once, so some may end below ``k_core`` (this is what the TD3 reference
            setup did on ML-100k, hence its 943 users / 1,349 items / 99,287 interactions).
        min_user_interactions: users with fewer interactions after filtering are dropped; at least 3,
            because leave-one-out takes one test and one validation target and needs one item to train on.
        top_items: keep only the interactions of the this many most frequent items (counted on the raw log,
            ties broken by the item's token order) before the k-core filter; 0 = every item. The k-core filter
            that follows may remove some more, so the catalogue ends at most this large.
    """

    k_core: int = 5
    k_core_mode: str = "iterative"
    min_user_interactions: int = 3
    top_items: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings."""
        if not isinstance(self.k_core, (int, np.integer)) or isinstance(self.k_core, bool) or self.k_core < 0:
            raise ConfigError(f"k_core must be an integer >= 0 (0 = no filtering), got {self.k_core!r}")
        if self.k_core_mode not in K_CORE_MODES:
            raise ConfigError(f"k_core_mode must be one of {', '.join(K_CORE_MODES)}, got {self.k_core_mode!r}")
        if not isinstance(self.min_user_interactions, (int, np.integer)) or self.min_user_interactions < 3:
            raise ConfigError("min_user_interactions must be an integer >= 3 (leave-one-out needs a training "
                              f"item, a validation and a test target), got {self.min_user_interactions!r}")
        if not isinstance(self.top_items, (int, np.integer)) or isinstance(self.top_items, bool) or self.top_items < 0:
            raise ConfigError(f"top_items must be an integer >= 0 (0 = every item), got {self.top_items!r}")

    def describe(self) -> str:
        """Short human-readable form, e.g. ``5-core single-pass``."""
        core = "no k-core" if self.k_core <= 1 else f"{self.k_core}-core {self.k_core_mode}"
        return f"top {self.top_items} items, {core}" if self.top_items else core


def top_items_mask(items: np.ndarray, tokens: np.ndarray, k: int) -> np.ndarray:
    """Which interactions belong to the ``k`` most frequent items (``k <= 0``: all). ``items``: integer codes
    ``0..m-1`` of each interaction's item; ``tokens``: the raw token of each code (ties of frequency are broken
    by :func:`token_order`, so the choice does not depend on the file's row order)."""
    if k <= 0 or k >= len(tokens):
        return np.ones(len(items), dtype=bool)
    counts = np.bincount(items, minlength=len(tokens))
    rank_of_token = np.empty(len(tokens), dtype=np.int64)
    rank_of_token[token_order(np.asarray(tokens, dtype=object).astype(str))] = np.arange(len(tokens))
    chosen = np.lexsort((rank_of_token, -counts))[:k]
    keep_item = np.zeros(len(tokens), dtype=bool)
    keep_item[chosen] = True
    return keep_item[items]


def k_core_mask(users: np.ndarray, items: np.ndarray, k: int, mode: str = "iterative") -> tuple[np.ndarray, int]:
    """Which interactions survive k-core filtering, and how many filtering rounds removed something.

    Args:
        users, items: integer codes ``0..n-1`` of each interaction's user and item.
        k: minimum number of interactions per user and per item (<= 1: keep everything).
        mode: ``iterative`` (until stable: the maximal subset where every user and item has >= k
            interactions) or ``single-pass`` (counts on the input, one removal of both sides).
    """
    if mode not in K_CORE_MODES:
        raise ConfigError(f"k_core_mode must be one of {', '.join(K_CORE_MODES)}, got {mode!r}")
    keep = np.ones(len(users), dtype=bool)
    if k <= 1 or len(users) == 0:
        return keep, 0
    n_users = int(users.max()) + 1
    n_items = int(items.max()) + 1
    rounds = 0
    while True:
        user_count = np.bincount(users[keep], minlength=n_users)
        item_count = np.bincount(items[keep], minlength=n_items)
        drop = keep & ((user_count[users] < k) | (item_count[items] < k))
        if not drop.any():
            break
        keep &= ~drop
        rounds += 1
        if mode == "single-pass":
            break
    return keep, rounds


def chronological_order(users: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    """Permutation grouping interactions by user, each user's oldest first; ties keep the file order."""
    position = np.arange(len(users))
    if timestamps is None:
        return np.lexsort((position, users))
    return np.lexsort((position, timestamps, users))


def token_order(tokens: np.ndarray) -> np.ndarray:
    """Indices that sort ``tokens``: numerically when all are integers (ties by string), else as strings."""
    as_str = np.asarray(tokens, dtype=str)
    if len(as_str) and pd.Series(as_str).str.fullmatch(r"[+-]?\d{1,18}").all():
        return np.lexsort((as_str, as_str.astype(np.int64)))
    return np.argsort(as_str, kind="stable")


def preprocess(
    raw: RawInteractions, config: PreprocessConfig | None = None, name: str | None = None
) -> SequenceDataset:
    """Filter, sort and remap ``raw`` into a :class:`SequenceDataset` (see the module docstring)."""
    config = config or PreprocessConfig()
    config.validate()
    source = raw.source
    if len(raw) == 0:
        raise DataError(f"{source}: no interactions to preprocess")
    user_codes, user_uniques = pd.factorize(raw.users)
    item_codes, item_uniques = pd.factorize(raw.items)
    counts = {"raw_users": len(user_uniques), "raw_items": len(item_uniques), "raw_interactions": len(raw)}

    top = top_items_mask(item_codes, item_uniques, config.top_items)  # (then the k-core of what it leaves)
    core, rounds = k_core_mask(user_codes[top], item_codes[top], config.k_core, config.k_core_mode)
    keep = np.zeros(len(top), dtype=bool)
    keep[np.flatnonzero(top)[core]] = True
    if not keep.any():
        raise DataError(f"{source}: nothing left after {config.describe()} filtering ({len(raw)} interactions, "
                        f"{len(user_uniques)} users, {len(item_uniques)} items); lower --k-core or use more data")
    log.info("%s: %s kept %d of %d interactions (%d round(s))", name or source, config.describe(),
             int(keep.sum()), len(raw), rounds)
    user_codes, item_codes = user_codes[keep], item_codes[keep]
    times = raw.timestamps[keep] if raw.timestamps is not None else None

    order = chronological_order(user_codes, times)
    user_codes, item_codes = user_codes[order], item_codes[order]

    per_user = np.bincount(user_codes, minlength=len(user_uniques))
    short = (per_user > 0) & (per_user < config.min_user_interactions)
    n_short = int(short.sum())
    if n_short:
        log.info("%s: dropped %d user(s) with fewer than %d interactions (leave-one-out needs %d)",
                 name or source, n_short, config.min_user_interactions, config.min_user_interactions)
        long_enough = ~short[user_codes]
        user_codes, item_codes = user_codes[long_enough], item_codes[long_enough]
    if len(user_codes) == 0:
        raise DataError(f"{source}: no user has {config.min_user_interactions} or more interactions after "
                        f"{config.describe()} filtering; lower --k-core or use more data")

    user_ids, user_tokens = _renumber(user_codes, user_uniques, start=0)
    item_ids, item_tokens = _renumber(item_codes, item_uniques, start=1)
    # user_codes are grouped (sorted by code); renumbering permutes the groups, so re-sort by the new id
    # with a stable sort to keep each user's chronological order.
    regroup = np.argsort(user_ids, kind="stable")
    item_ids = item_ids[regroup]
    lengths = np.bincount(user_ids, minlength=len(user_tokens))
    sequences = np.split(item_ids.astype(np.int64), np.cumsum(lengths)[:-1])

    info = asdict(config)
    info.update(counts)
    info.update({
        "k_core_rounds": rounds,
        "dropped_by_k_core": int((~keep).sum()),
        "dropped_short_users": n_short,
        "order": "timestamp (stable)" if raw.timestamps is not None else "file order",
        "id_order": "sorted raw tokens (numeric when all integers); items from 1, 0 = padding",
        "users": len(sequences),
        "items": len(item_tokens),
        "interactions": int(lengths.sum()),
        "source": source,
        "format": raw.fmt,
    })
    return SequenceDataset(name=name or source, sequences=sequences, user_tokens=user_tokens,
                           item_tokens=item_tokens, preprocessing=info)


def _renumber(codes: np.ndarray, uniques: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """New ids ``start..`` for the codes that occur, ordered by :func:`token_order`; returns (ids, tokens)."""
    present = np.unique(codes)
    tokens = np.asarray(uniques, dtype=object)[present].astype(str)
    order = token_order(tokens)
    new_id = np.empty(len(uniques), dtype=np.int64)
    new_id[present[order]] = np.arange(start, start + len(present))
    return new_id[codes], tokens[order]
