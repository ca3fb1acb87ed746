"""The one interface every learner implements (DESIGN §2).

A learner reads a sequence of input *vectors* ``[B, L, H]`` (right-padded, with ``lengths``) and returns the
sequence representation ("features", ``[B, H]``) used to score the next item. Item scores are always
``features @ E^T`` over the learner's item embedding ``E``, so that

- **hard** input (real item ids) goes through an embedding lookup (:meth:`embed_ids`);
- **soft** input (a distribution ``p`` over the ``n_items`` real items at each position) goes through the
  mixture ``p @ E[1:]`` (:meth:`embed_soft`);
- a soft cross-entropy target can be computed without materialising scores: ``sum_i p_i z_i = h . (p @ E)``.

Score columns are indexed by item id: column 0 (padding) is ``-inf`` so it never ranks and never wins.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class SequentialRecommender(nn.Module, ABC):
    """Base class of SASRec, GRU4Rec, NARM and BERT4Rec.

    Subclasses own ``self.item_embedding`` (an ``nn.Embedding`` with at least ``n_items + 1`` rows, row 0 =
    padding), keep their typed config dataclass in ``self.config`` (``dataclasses.asdict(model.config)`` plus
    ``n_items`` and ``max_len`` rebuild the model through ``td3rec.models.build_model``) and implement
    :meth:`encode`. ``model(inputs, lengths)`` is :meth:`encode`, so that
    ``torch.func.functional_call(model, params, (inputs, lengths))`` runs the encoder on explicit parameters.
    """

    #: registry name of the architecture (``"sasrec"``, ...)
    name: str = ""
    #: whether the representation at a position depends only on earlier positions
    causal: bool = True
    #: whether inputs are limited to ``max_len`` positions (a learned position table, as SASRec and BERT4Rec)
    positional: bool = False

    def __init__(self, n_items: int, hidden_size: int, max_len: int) -> None:
        super().__init__()
        self.n_items = int(n_items)
        self.hidden_size = int(hidden_size)
        self.max_len = int(max_len)

    # -- inputs ---------------------------------------------------------------------------------
    def item_vectors(self) -> torch.Tensor:
        """Embeddings of the real items ``1..n_items``, shape ``[n_items, H]`` (row j-1 = item j)."""
        return self.item_embedding.weight[1 : self.n_items + 1]

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Hard input: item ids ``[B, L]`` (0 = padding) to vectors ``[B, L, H]``."""
        return self.item_embedding(ids)

    def embed_soft(self, probs: torch.Tensor) -> torch.Tensor:
        """Soft input: distributions over the real items ``[B, L, n_items]`` to vectors ``[B, L, H]``."""
        return probs @ self.item_vectors()

    # -- representation -------------------------------------------------------------------------
    @abstractmethod
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Features ``[B, H]`` of sequences of input vectors ``[B, L, H]`` whose first ``lengths`` positions are
        real; the features predict the item that follows position ``lengths - 1``. Positions at or after
        ``lengths`` must not influence the result."""

    def encode_prefixes(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Features of every prefix at once, ``[B, L, H]``: row ``t`` equals ``encode(inputs, t + 1)`` for
        ``t < lengths`` (rows ``t >= lengths`` are unspecified). Used to predict every position of a sequence.
        This generic version calls :meth:`encode` once per position; models that get all prefixes from one
        pass (SASRec, GRU4Rec, NARM) override it."""
        lengths = lengths.to(inputs.device)
        steps = [self.encode(inputs, lengths.clamp(max=t + 1)) for t in range(inputs.shape[1])]
        return torch.stack(steps, dim=1)

    def features(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Features of hard (id) input."""
        return self.encode(self.embed_ids(ids), lengths)

    # -- outputs --------------------------------------------------------------------------------
    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, n_items + 1]`` of every item id; column 0 (padding) is ``-inf``."""
        logits = features @ self.item_embedding.weight[: self.n_items + 1].T
        pad = torch.full_like(logits[:, :1], float("-inf"))
        return torch.cat([pad, logits[:, 1:]], dim=1)

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next item ids ``targets`` (hard targets, full softmax over items)."""
        logits = features @ self.item_vectors().T  # [B, n_items], column j-1 = item j
        return nn.functional.cross_entropy(logits, targets - 1)

    def training_loss(self, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of one batch of real examples in training mode. Causal models: next-item cross-entropy.
        Models with their own training objective (BERT4Rec's cloze) override this."""
        return self.loss(self.features(ids, lengths), targets)

    def window_loss(self, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of a batch of training windows (``td3rec.data.sequences.window_examples``): next-item
        cross-entropy at every real position, from one pass (:meth:`encode_prefixes`). BERT4Rec's cloze
        objective already uses every position and overrides this."""
        features = self.encode_prefixes(self.embed_ids(ids), lengths)
        n = ids.shape[1]
        valid = torch.arange(n, device=ids.device) < lengths.unsqueeze(1)
        following = torch.zeros_like(ids)
        following[:, :-1] = ids[:, 1:]
        following[torch.arange(ids.shape[0], device=ids.device), lengths - 1] = targets
        return self.loss(features[valid], following[valid])

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`encode`; lets ``torch.func.functional_call(model, params, (inputs, lengths))`` work."""
        return self.encode(inputs, lengths)
