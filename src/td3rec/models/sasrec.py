"""SASRec (Kang & McAuley, 2018) in RecBole's variant, the default distillation architecture of TD3.

Item embedding + learned absolute position embedding (positions counted from the left; inputs are
right-padded), LayerNorm + dropout, then causal transformer blocks. The features of a sequence are the hidden
state at its last real position ``lengths - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from td3rec.models.base import SequentialRecommender
from td3rec.models.config import ModelConfig
from td3rec.models.positions import check_input_length
from td3rec.models.transformer import reset_transformer_learner_, transformer_encoder, validate_transformer_config


@dataclass
class SASRecConfig(ModelConfig):
    """SASRec settings; the defaults are the TD3 reference setup.

    Attributes:
        n_layers: number of transformer blocks.
        n_heads: attention heads per block (must divide ``hidden_size``).
        hidden_size: dimension of item embeddings, hidden states and features.
        inner_size: width of the point-wise feed-forward layer.
        hidden_dropout: dropout on the input embeddings and after attention / feed-forward outputs.
        attn_dropout: dropout on the attention probabilities.
        layer_norm_eps: epsilon of every LayerNorm.
        initializer_range: standard deviation of the normal initialisation of weights and embeddings.
    """

    model_name = "sasrec"

    n_layers: int = 1
    n_heads: int = 1
    hidden_size: int = 32
    inner_size: int = 64
    hidden_dropout: float = 0.2
    attn_dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def validate(self) -> None:
        validate_transformer_config(self)


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommender (causal transformer)."""

    name = "sasrec"
    causal = True
    positional = True

    def __init__(self, n_items: int, max_len: int, config: SASRecConfig | None = None) -> None:
        config = config if config is not None else SASRecConfig()
        super().__init__(n_items, config.hidden_size, max_len)
        self.config = config
        self.item_embedding = nn.Embedding(n_items + 1, config.hidden_size, padding_idx=0)
        self.encoder = transformer_encoder(config, max_positions=max_len)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """RecBole's initialisation (normal weights, zero biases, unit LayerNorms); the padding row is zero."""
        reset_transformer_learner_(self)

    def hidden_states(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, L, H]``; position ``t`` sees positions ``0..t`` only (and none ``>= lengths``)."""
        check_input_length(inputs.shape[1], self.max_len, self.name)
        return self.encoder(inputs, lengths, causal=True)

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        check_input_length(inputs.shape[1], self.max_len, self.name)
        lengths = lengths.to(inputs.device)
        return self.encoder(inputs, lengths, causal=True, at=lengths - 1)

    def encode_prefixes(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # causal attention: the state at position t is the feature of prefix t + 1
        return self.hidden_states(inputs, lengths)
