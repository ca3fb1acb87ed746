"""Preprocessed user sequences, the leave-one-out split and the real training examples.

Conventions used across td3rec:
- item ids are remapped to ``1..n_items``; ``0`` is padding;
- sequences are chronological (oldest first);
- model inputs are **right-padded** id matrices ``[N, L]`` with a ``lengths`` vector; the item to predict
  follows position ``lengths - 1``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from td3rec.errors import DataError


@dataclass
class SequenceDataset:
    """Chronological item sequences of every user after preprocessing.

    Attributes:
        name: dataset name or file path it came from.
        sequences: one int64 array per user, item ids in ``1..n_items``, oldest first.
        user_tokens: raw user id (as a string) of each internal user index.
        item_tokens: raw item id (as a string) of internal item ``j`` at index ``j - 1``.
        preprocessing: the settings that produced it (k-core, mode, ...), recorded for reports.
    """

    name: str
    sequences: list[np.ndarray]
    user_tokens: np.ndarray
    item_tokens: np.ndarray
    preprocessing: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_items(self) -> int:
        return len(self.item_tokens)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def fingerprint(self) -> str:
        """SHA-256 over the sequences and the item id map: identifies the exact data a model or summary saw."""
        h = hashlib.sha256()
        h.update(np.int64(self.n_items).tobytes())
        for seq in self.sequences:
            h.update(np.int64(len(seq)).tobytes())
            h.update(np.ascontiguousarray(seq, dtype=np.int64).tobytes())
        for tok in self.item_tokens:
            h.update(str(tok).encode("utf-8") + b"\0")
        return h.hexdigest()

    def item_popularity(self) -> np.ndarray:
        """Interaction count of every item id, shape ``[n_items + 1]`` (index 0 = padding = 0)."""
        counts = np.zeros(self.n_items + 1, dtype=np.int64)
        for seq in self.sequences:
            np.add.at(counts, seq, 1)
        return counts


@dataclass
class LeaveOneOutSplit:
    """Leave-one-out split: last item = test target, second to last = validation target.

    Attributes:
        train: per-user training sequence (all items but the last two).
        valid_target: validation target item per user.
        test_target: test target item per user.
        full: per-user full sequence (for excluding history and drawing negatives).
        n_items: catalogue size.
    """

    train: list[np.ndarray]
    valid_target: np.ndarray
    test_target: np.ndarray
    full: list[np.ndarray]
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.train)


def leave_one_out(dataset: SequenceDataset) -> LeaveOneOutSplit:
    """Split every user's sequence; users need at least 3 interactions (guaranteed by preprocessing)."""
    train, valid, test = [], [], []
    for seq in dataset.sequences:
        if len(seq) < 3:
            raise DataError("leave-one-out needs at least 3 interactions per user; preprocess the data first")
        train.append(seq[:-2])
        valid.append(seq[-2])
        test.append(seq[-1])
    return LeaveOneOutSplit(
        train=train,
        valid_target=np.asarray(valid, dtype=np.int64),
        test_target=np.asarray(test, dtype=np.int64),
        full=list(dataset.sequences),
        n_items=dataset.n_items,
    )


@dataclass
class Examples:
    """A batch-able set of (input sequence, next item) examples.

    Attributes:
        inputs: ``[N, L]`` int64, right-padded with 0.
        lengths: ``[N]`` int64, number of real items in each row (>= 1).
        targets: ``[N]`` int64, the next item after the input.
        users: ``[N]`` int64, the internal user index each example belongs to.
    """

    inputs: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, index: torch.Tensor) -> "Examples":
        """The examples at ``index`` (a LongTensor or slice)."""
        return Examples(self.inputs[index], self.lengths[index], self.targets[index], self.users[index])

    def to(self, device: torch.device | str) -> "Examples":
        return Examples(*(t.to(device) for t in (self.inputs, self.lengths, self.targets, self.users)))

    def trimmed(self) -> "Examples":
        """The same examples without the trailing columns that are padding in every row.

        Right padding never influences a model's output at real positions, so a batch of short sequences
        (most users of Amazon data) costs only as much as its longest row.
        """
        width = max(1, int(self.lengths.max())) if len(self) else self.inputs.shape[1]
        if width == self.inputs.shape[1]:
            return self
        return Examples(self.inputs[:, :width], self.lengths, self.targets, self.users)


#: message when no user has a training sequence of two items or more
NO_EXAMPLES = ("no training examples: every user's training sequence (all but the last two items) has fewer than 2 "
               "items; use data where some users have at least 4 interactions")


def _pack(histories: list[np.ndarray], targets: list[int], users: list[int], max_len: int) -> Examples:
    """Right-pad the last ``max_len`` items of every history into one matrix."""
    n = len(histories)
    inputs = np.zeros((n, max_len), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    for row, hist in enumerate(histories):
        tail = hist[-max_len:]
        inputs[row, : len(tail)] = tail
        lengths[row] = len(tail)
    return Examples(
        inputs=torch.from_numpy(inputs),
        lengths=torch.from_numpy(lengths),
        targets=torch.as_tensor(np.asarray(targets, dtype=np.int64)),
        users=torch.as_tensor(np.asarray(users, dtype=np.int64)),
    )


def prefix_examples(split: LeaveOneOutSplit, max_len: int) -> Examples:
    """Every prefix of every training sequence with its next item as target (inputs truncated to the last ``max_len``).

    A training sequence of length m yields m - 1 examples (this matches RecBole's sequence augmentation,
    which the TD3 reference setup used).
    """
    histories, targets, users = [], [], []
    for u, seq in enumerate(split.train):
        for t in range(1, len(seq)):
            histories.append(seq[max(0, t - max_len) : t])
            targets.append(int(seq[t]))
            users.append(u)
    if not histories:
        raise DataError(NO_EXAMPLES)
    return _pack(histories, targets, users, max_len)


def window_examples(split: LeaveOneOutSplit, max_len: int) -> Examples:
    """Every training sequence cut from its end into windows of ``max_len + 1`` items (the first may be
    shorter): the window's first ``max_len`` items are the input and its last item the target, and every
    position inside the window is a next-item example whose context starts at the window's start.

    This is the cheap alternative to :func:`prefix_examples` (one pass per window predicts up to ``max_len``
    items instead of one): every training interaction after the first is a target exactly once.
    """
    histories, targets, users = [], [], []
    for u, seq in enumerate(split.train):
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            histories.append(seq[start : end - 1])
            targets.append(int(seq[end - 1]))
            users.append(u)
            end = start + 1 if start > 0 else 0
    if not histories:
        raise DataError(NO_EXAMPLES)
    return _pack(histories, targets, users, max_len)


def next_item_targets(examples: Examples) -> torch.Tensor:
    """Per-position next items ``[N, L]`` of right-padded examples: position ``t`` is followed by input
    ``t + 1``, and the last real position by the example's target; padding positions get 0."""
    shifted = torch.zeros_like(examples.inputs)
    shifted[:, :-1] = examples.inputs[:, 1:]
    rows = torch.arange(len(examples))
    shifted[rows, examples.lengths - 1] = examples.targets
    valid = torch.arange(examples.inputs.shape[1]) < examples.lengths.unsqueeze(1)
    return shifted * valid


def evaluation_examples(split: LeaveOneOutSplit, which: str, max_len: int) -> Examples:
    """One example per user: ``valid`` predicts the validation target from the training sequence, ``test``
    predicts the test target from the training sequence plus the validation target."""
    if which not in ("valid", "test"):
        raise ValueError(f"which must be 'valid' or 'test', not {which!r}")
    histories, targets = [], []
    for u, seq in enumerate(split.train):
        if which == "valid":
            histories.append(seq)
            targets.append(int(split.valid_target[u]))
        else:
            histories.append(np.append(seq, split.valid_target[u]))
            targets.append(int(split.test_target[u]))
    return _pack(histories, targets, list(range(split.n_users)), max_len)


def iterate_batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None):
    """Yield LongTensor index batches covering ``range(n)`` once (shuffled with ``generator`` if asked)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
