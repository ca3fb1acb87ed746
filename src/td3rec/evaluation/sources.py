"""Training data for learners judged by the evaluation protocol: a soft summary or a set of hard sequences.

Both present the same face to :func:`td3rec.evaluation.learner_training.train_learner`: a number of sequences,
their lengths, and their input vectors for a given learner (soft: the summary's read-out through the
learner's own item embedding; hard: an embedding lookup).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from td3rec.models.base import SequentialRecommender
from td3rec.summary.readout import soft_readout


@dataclass
class SoftSequences:
    """A soft summary given by its core product ``W [n, L, d3]`` and item factor ``V [I, d3]`` (fixed)."""

    W: torch.Tensor
    V: torch.Tensor
    chunk_size: int | None = None

    def __len__(self) -> int:
        return int(self.W.shape[0])

    def lengths(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.full((len(rows),), self.W.shape[1], dtype=torch.long, device=self.W.device)

    def vectors(self, model: SequentialRecommender, rows: torch.Tensor) -> torch.Tensor:
        return soft_readout(self.W[rows], self.V, model.item_vectors(), self.chunk_size)

    def to(self, device: torch.device | str) -> "SoftSequences":
        return SoftSequences(self.W.to(device), self.V.to(device), self.chunk_size)


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
