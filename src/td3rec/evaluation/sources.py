"""Training data for learners judged by the evaluation protocol: a soft summary or a set of hard sequences.

Both present the same face to :func:`td3rec.evaluation.learner_training.train_learner`: a number of sequences,
their lengths, and their input vectors for a given learner (soft: the summary's read-out through the
learner's own item embedding; hard: an embedding lookup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from td3rec.models.base import SequentialRecommender
from td3rec.summary.readout import soft_readout
from td3rec.summary.support import sparse_readout, top_k_support

if TYPE_CHECKING:
    from td3rec.data.sequences import SequenceDataset


@dataclass
class SoftSequences:
    """A soft summary given by its core product ``W [n, L, d3]`` and item factor ``V [I, d3]`` (fixed).

    ``support_size`` k > 0: each position's distribution is restricted to its top-k items
    (:mod:`td3rec.summary.support`), as the summary was distilled; 0 = every item.
    """

    W: torch.Tensor
    V: torch.Tensor
    chunk_size: int | None = None
    support_size: int = 0

    def __post_init__(self) -> None:
        sparse = 0 < self.support_size < self.V.shape[0]
        self._support = top_k_support(self.W, self.V, self.support_size) if sparse else None

    def __len__(self) -> int:
        return int(self.W.shape[0])

    def lengths(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.full((len(rows),), self.W.shape[1], dtype=torch.long, device=self.W.device)

    def vectors(self, model: SequentialRecommender, rows: torch.Tensor) -> torch.Tensor:
        if self._support is not None:
            return sparse_readout(self.W[rows], self.V, model.item_vectors(), self._support[rows])
        return soft_readout(self.W[rows], self.V, model.item_vectors(), self.chunk_size)

    def to(self, device: torch.device | str) -> "SoftSequences":
        return SoftSequences(self.W.to(device), self.V.to(device), self.chunk_size, self.support_size)


@dataclass
class DecodedSoftSequences:
    """A Farzi summary with a full learned decoder: ``latent [n, L, d]``, ``decoder [d, I]``; the input vectors
    are the plain ``softmax(latent @ decoder) @ E`` (the item axis is materialised for the rows of a batch).

    ``V [I, d3]`` is the item factor the ``shared-item-factor`` protocol starts learners from (not part of the
    read-out).
    """

    latent: torch.Tensor
    decoder: torch.Tensor
    V: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.latent.shape[0])

    def lengths(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.full((len(rows),), self.latent.shape[1], dtype=torch.long, device=self.latent.device)

    def vectors(self, model: SequentialRecommender, rows: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.latent[rows] @ self.decoder, dim=-1) @ model.item_vectors()

    def to(self, device: torch.device | str) -> "DecodedSoftSequences":
        V = self.V.to(device) if self.V is not None else None
        return DecodedSoftSequences(self.latent.to(device), self.decoder.to(device), V)


@dataclass
class HardSequences:
    """Real item-id sequences ``ids [n, L]`` (right-padded) with ``full_lengths [n]`` (each >= 2).

    ``V`` optionally carries an item factor for the shared-item-factor initialisation (the same V as the
    summary it is compared with), so that a real subset is judged under the same protocol.
    """

    ids: torch.Tensor
    full_lengths: torch.Tensor
    V: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def lengths(self, rows: torch.Tensor) -> torch.Tensor:
        return self.full_lengths[rows]

    def vectors(self, model: SequentialRecommender, rows: torch.Tensor) -> torch.Tensor:
        return model.embed_ids(self.ids[rows])

    def to(self, device: torch.device | str) -> "HardSequences":
        V = self.V.to(device) if self.V is not None else None
        return HardSequences(self.ids.to(device), self.full_lengths.to(device), V)


def load_hard_sequences(path: str, dataset: "SequenceDataset", max_len: int, fmt: str | None = None,
                        V: torch.Tensor | None = None) -> HardSequences:
    """Hard synthetic sequences from an interaction file (e.g. written by ``td3rec export``) as training data
    for learners of ``dataset``: one sequence per user of the file in chronological order (file order on
    ties), its last ``max_len`` items, raw item ids mapped through ``dataset``'s id map.

    Users with a single item are dropped (no next-item example). An item the dataset does not know is a
    :class:`~td3rec.errors.DataError` naming it: the file belongs to other data.
    """
    import numpy as np
    import pandas as pd

    from td3rec.data.preprocess import chronological_order
    from td3rec.data.readers import read_interactions
    from td3rec.errors import DataError

    raw = read_interactions(path, fmt)
    index = {str(tok): j for j, tok in enumerate(dataset.item_tokens, start=1)}
    item_ids = np.fromiter((index.get(str(tok), 0) for tok in raw.items), dtype=np.int64, count=len(raw))
    if (item_ids == 0).any():
        unknown = raw.items[int(np.argmax(item_ids == 0))]
        raise DataError(f"{raw.source}: item {unknown!r} is not an item of {dataset.name}; these sequences "
                        f"belong to other data (export them from a summary of {dataset.name})")
    user_codes = pd.factorize(raw.users)[0]
    order = chronological_order(user_codes, raw.timestamps)
    user_codes, item_ids = user_codes[order], item_ids[order]
    bounds = np.flatnonzero(np.diff(user_codes)) + 1
    sequences = [s[-max_len:] for s in np.split(item_ids, bounds) if len(s) >= 2]
    if not sequences:
        raise DataError(f"{raw.source}: no sequence has two items or more; nothing to train on")
    ids = torch.zeros(len(sequences), max_len, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.from_numpy(seq)
    return HardSequences(ids, torch.tensor([len(s) for s in sequences]), V)

