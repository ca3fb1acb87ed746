"""GRU4Rec (Hidasi et al., 2016; Tan et al., 2016) in RecBole's variant.

Item embedding -> dropout -> GRU (no biases, as in RecBole) -> dense layer from the GRU state back to the
embedding dimension, so that features live in the item-embedding space and scores are ``features @ E^T``.
The features of a sequence are taken at its last real position ``lengths - 1``; the GRU reads left to right,
so later (padding) positions never influence them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from td3rec.models.base import SequentialRecommender
from td3rec.models.config import ModelConfig
from td3rec.models.positions import check_input_length, gather_positions
from td3rec.models.recurrent import GRU


@dataclass
class GRU4RecConfig(ModelConfig):
    """GRU4Rec settings; the defaults are RecBole's.

    Attributes:
        embedding_size: dimension of item embeddings and of the features (the base class's ``hidden_size``).
        hidden_size: dimension of the GRU state (mapped back to ``embedding_size`` by a dense layer).
        n_layers: number of stacked GRU layers.
        dropout: dropout on the input item embeddings.
    """

    model_name = "gru4rec"
    feature_field = "embedding_size"

    embedding_size: int = 64
    hidden_size: int = 128
    n_layers: int = 1
    dropout: float = 0.3

    def validate(self) -> None:
        self._positive("embedding_size", "hidden_size", "n_layers")
        self._probability("dropout")


class GRU4Rec(SequentialRecommender):
    """Recurrent sequential recommender."""

    name = "gru4rec"
    causal = True

    def __init__(self, n_items: int, max_len: int, config: GRU4RecConfig | None = None) -> None:
        config = config if config is not None else GRU4RecConfig()
        super().__init__(n_items, config.embedding_size, max_len)
        self.config = config
        self.item_embedding = nn.Embedding(n_items + 1, config.embedding_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.gru = GRU(config.embedding_size, config.hidden_size, config.n_layers, bias=False)
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """RecBole's initialisation: Xavier-normal embeddings, Xavier-uniform GRU weights (every layer; RecBole
        only re-initialises the first), PyTorch's default for the dense layer; the padding row is zero."""
        nn.init.xavier_normal_(self.item_embedding.weight)
        for weight in self.gru.parameters():
            nn.init.xavier_uniform_(weight)
        self.dense.reset_parameters()
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def gru_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """GRU states ``[B, L, hidden]`` of input vectors ``[B, L, H]`` (state ``t`` has read positions ``0..t``)."""
        check_input_length(inputs.shape[1], self.max_len, self.name)
        return self.gru(self.emb_dropout(inputs))

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.dense(gather_positions(self.gru_states(inputs), lengths - 1))

    def encode_prefixes(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.dense(self.gru_states(inputs))
