"""Training examples: prefixes (RecBole augmentation) and windows (every position once), plus the window loss
against a naive per-prefix computation."""

from __future__ import annotations

import numpy as np
import torch

from td3rec.data.sequences import (
    LeaveOneOutSplit,
    next_item_targets,
    prefix_examples,
    window_examples,
)
from td3rec.models import build_model


def split_of(train: list[list[int]], n_items: int = 20) -> LeaveOneOutSplit:
    seqs = [np.asarray(s, dtype=np.int64) for s in train]
    n = len(seqs)
    return LeaveOneOutSplit(train=seqs, valid_target=np.ones(n, dtype=np.int64), test_target=np.ones(n, dtype=np.int64),
                            full=seqs, n_items=n_items)


def pairs_of_windows(ex) -> list[tuple[int, tuple[int, ...], int]]:
    """(user, context, next item) for every position of every window."""
    out = []
    nxt = next_item_targets(ex)
    for row in range(len(ex)):
        n = int(ex.lengths[row])
        ids = ex.inputs[row, :n].tolist()
        for t in range(n):
            out.append((int(ex.users[row]), tuple(ids[: t + 1]), int(nxt[row, t])))
    return out


def test_windows_predict_every_training_item_after_the_first_exactly_once():
    rng = np.random.default_rng(0)
    train = [list(rng.integers(1, 21, size=m)) for m in (2, 3, 7, 11, 12, 13, 30)]
    ex = window_examples(split_of(train), max_len=5)
    got = pairs_of_windows(ex)
    for u, seq in enumerate(train):
        targets = [nxt for user, _, nxt in got if user == u]
        assert sorted(targets) == sorted(int(x) for x in seq[1:])
    # every context is a contiguous slice of at most max_len items that ends right before its target
    for u, context, nxt in got:
        seq = [int(x) for x in train[u]]
        assert len(context) <= 5
        assert any(seq[i : i + len(context)] == list(context) and seq[i + len(context)] == nxt
                   for i in range(len(seq) - len(context)))
    assert (ex.lengths <= 5).all() and (ex.lengths >= 1).all()


def test_prefixes_are_every_prefix_truncated_to_max_len():
    train = [[1, 2, 3, 4, 5, 6], [7, 8]]
    ex = prefix_examples(split_of(train), max_len=3)
    assert len(ex) == 5 + 1
    rows = {(tuple(ex.inputs[i, : ex.lengths[i]].tolist()), int(ex.targets[i])) for i in range(len(ex))}
    assert rows == {((1,), 2), ((1, 2), 3), ((1, 2, 3), 4), ((2, 3, 4), 5), ((3, 4, 5), 6), ((7,), 8)}


def test_window_loss_equals_mean_of_per_prefix_cross_entropies():
    torch.manual_seed(0)
    model = build_model("sasrec", 20, 5, hidden_size=8, inner_size=8, hidden_dropout=0.0, attn_dropout=0.0)
    model = model.double().eval()
    rng = np.random.default_rng(1)
    ex = window_examples(split_of([list(rng.integers(1, 21, size=m)) for m in (4, 9, 12)]), max_len=5)
    got = model.window_loss(ex.inputs, ex.lengths, ex.targets)
    losses = []
    nxt = next_item_targets(ex)
    for row in range(len(ex)):
        for t in range(int(ex.lengths[row])):
            feats = model.features(ex.inputs[row : row + 1], torch.tensor([t + 1]))
            losses.append(torch.nn.functional.cross_entropy(model.scores(feats)[:, 1:], nxt[row : row + 1, t] - 1))
    torch.testing.assert_close(got, torch.stack(losses).mean(), rtol=1e-10, atol=1e-10)
