"""NARM (Li et al., 2017) in RecBole's variant.

A GRU encodes the sequence. The *global* summary is its state at the last real position; the *local* summary
is an attention-weighted sum of the states at the real positions, with weights
``alpha_s = v^T sigmoid(A1 h_s + A2 h_last)`` (not normalised, as in the paper and RecBole). The two are
concatenated, dropped out, and projected by the bilinear matrix ``B`` (2 * hidden -> embedding), so features
live in the item-embedding space and scores are ``features @ E^T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from td3rec.models.base import SequentialRecommender
from td3rec.models.config import ModelConfig
from td3rec.models.positions import check_input_length, gather_positions, valid_positions
from td3rec.models.recurrent import GRU


@dataclass
class NARMConfig(ModelConfig):
    """NARM settings; the defaults are RecBole's.

    Attributes:
        embedding_size: dimension of item embeddings and of the features (the base class's ``hidden_size``).
        hidden_size: dimension of the GRU state and of the attention space.
        n_layers: number of stacked GRU layers.
        emb_dropout: dropout on the input item embeddings (RecBole's ``dropout_probs[0]``).
        ct_dropout: dropout on the concatenated [local, global] summary (RecBole's ``dropout_probs[1]``).
    """

    model_name = "narm"
    feature_field = "embedding_size"

    embedding_size: int = 64
    hidden_size: int = 128
    n_layers: int = 1
    emb_dropout: float = 0.25
    ct_dropout: float = 0.5

    def validate(self) -> None:
        self._positive("embedding_size", "hidden_size", "n_layers")
        self._probability("emb_dropout", "ct_dropout")


class NARM(SequentialRecommender):
    """Neural attentive recommender: GRU encoder with global and local (attention) summaries."""

    name = "narm"
    causal = True

    def __init__(self, n_items: int, max_len: int, config: NARMConfig | None = None) -> None:
        config = config if config is not None else NARMConfig()
        super().__init__(n_items, config.embedding_size, max_len)
        self.config = config
        hidden = config.hidden_size
        self.item_embedding = nn.Embedding(n_items + 1, config.embedding_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(config.emb_dropout)
        self.gru = GRU(config.embedding_size, hidden, config.n_layers, bias=False)
        self.a_1 = nn.Linear(hidden, hidden, bias=False)
        self.a_2 = nn.Linear(hidden, hidden, bias=False)
        self.v_t = nn.Linear(hidden, 1, bias=False)
        self.ct_dropout = nn.Dropout(config.ct_dropout)
        self.b = nn.Linear(2 * hidden, config.embedding_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """RecBole's initialisation: Xavier-normal embedding and linear weights, PyTorch's GRU default; the
        padding row is zero."""
        nn.init.xavier_normal_(self.item_embedding.weight)
        for layer in (self.a_1, self.a_2, self.v_t, self.b):
            nn.init.xavier_normal_(layer.weight)
        self.gru.reset_parameters()
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def gru_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """GRU states ``[B, L, hidden]`` of input vectors ``[B, L, H]``."""
        check_input_length(inputs.shape[1], self.max_len, self.name)
        return self.gru(self.emb_dropout(inputs))

    def _summarise(self, local: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Features ``[..., H]`` from the local and global summaries ``[..., hid]``."""
        return self.b(self.ct_dropout(torch.cat([local, last], dim=-1)))

    def _attention(self, keys_proj: torch.Tensor, last: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Unnormalised attention weights ``[P, L]`` of queries ``last`` ``[P, hid]`` over projected states
        ``keys_proj`` ``[P, L, hid]``, zero where the bool mask ``keys`` ``[P, L]`` is false."""
        gate = torch.sigmoid(keys_proj + self.a_2(last).unsqueeze(1))  # [P, L, hid]
        return self.v_t(gate).squeeze(-1) * keys.to(gate.dtype)

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states = self.gru_states(inputs)
        last = gather_positions(states, lengths - 1)  # [B, hid]
        keys = valid_positions(lengths, inputs.shape[1], inputs.device)
        alpha = self._attention(self.a_1(states), last, keys)  # [B, L]
        local = torch.bmm(alpha.unsqueeze(1), states).squeeze(1)
        return self._summarise(local, last)

    def encode_prefixes(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """All prefixes from one GRU pass; the attention is computed for the real positions only (memory
        ``P * L * hidden`` for ``P`` real positions), rows at padding positions are the global summary alone."""
        states = self.gru_states(inputs)
        n = inputs.shape[1]
        rows, queries = valid_positions(lengths, n, inputs.device).nonzero(as_tuple=True)  # the P real positions
        keys = torch.arange(n, device=inputs.device) <= queries.unsqueeze(1)  # [P, L] causal
        alpha = self._attention(self.a_1(states)[rows], states[rows, queries], keys)  # [P, L]
        weights = alpha.new_zeros(states.shape[0], n, n).index_put((rows, queries), alpha)  # [B, Q, L]
        return self._summarise(torch.bmm(weights, states), states)
