"""BERT4Rec (Sun et al., 2019) in RecBole's variant, adapted to td3rec's one-interface learners.

A bidirectional transformer trained with a cloze objective. The item embedding has ``n_items + 2`` rows: row 0
is padding and row ``n_items + 1`` is the ``[MASK]`` token. To predict the item after a sequence of length
``l``, the mask token is placed at position ``l`` (the model keeps ``max_len + 1`` positions, so a full-length
sequence still has room) and the features are the output head (dense + GELU + LayerNorm) applied to the
hidden state there. RecBole's per-item output bias is left out so that scores stay ``features @ E^T`` (the
identity the soft cross-entropy of distillation relies on).

Attention is bidirectional over the real positions and the mask position (``0 .. l``); later positions are
ignored. The model is not causal: the representation of a position depends on items after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from td3rec.models.base import SequentialRecommender
from td3rec.models.config import ModelConfig
from td3rec.models.positions import check_input_length, valid_positions
from td3rec.models.transformer import reset_transformer_learner_, transformer_encoder, validate_transformer_config


@dataclass
class BERT4RecConfig(ModelConfig):
    """BERT4Rec settings; the defaults are RecBole's.

    Attributes:
        n_layers: number of transformer blocks.
        n_heads: attention heads per block (must divide ``hidden_size``).
        hidden_size: dimension of item embeddings, hidden states and features.
        inner_size: width of the point-wise feed-forward layer.
        hidden_dropout: dropout on the input embeddings and after attention / feed-forward outputs.
        attn_dropout: dropout on the attention probabilities.
        layer_norm_eps: epsilon of every LayerNorm.
        initializer_range: standard deviation of the normal initialisation of weights and embeddings.
        mask_ratio: probability that each real item of a training sequence is masked in the cloze objective
            (the appended target is always masked).
    """

    model_name = "bert4rec"

    n_layers: int = 2
    n_heads: int = 2
    hidden_size: int = 64
    inner_size: int = 256
    hidden_dropout: float = 0.2
    attn_dropout: float = 0.2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    mask_ratio: float = 0.2

    def validate(self) -> None:
        validate_transformer_config(self)
        self._probability("mask_ratio", closed=True)


class BERT4Rec(SequentialRecommender):
    """Bidirectional transformer with a cloze training objective."""

    name = "bert4rec"
    causal = False
    positional = True

    def __init__(self, n_items: int, max_len: int, config: BERT4RecConfig | None = None) -> None:
        config = config if config is not None else BERT4RecConfig()
        super().__init__(n_items, config.hidden_size, max_len)
        self.config = config
        self.mask_id = n_items + 1
        self.item_embedding = nn.Embedding(n_items + 2, config.hidden_size, padding_idx=0)
        # room for the mask token after a full-length sequence
        self.encoder = transformer_encoder(config, max_positions=max_len + 1)
        self.output_dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """RecBole's initialisation (normal weights, zero biases, unit LayerNorms); the padding row is zero."""
        reset_transformer_learner_(self)

    # -- building blocks ----------------------------------------------------------------------------
    def output_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """RecBole's prediction head (dense, GELU, LayerNorm) mapping hidden states to features."""
        return self.output_norm(nn.functional.gelu(self.output_dense(hidden)))

    def hidden_states(self, inputs: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
        """Bidirectional hidden states ``[B, P, H]`` of input vectors ``[B, P, H]`` (``P <= max_len + 1``);
        every position attends to positions ``< n_valid`` only."""
        check_input_length(inputs.shape[1], self.max_len + 1, self.name)
        return self.encoder(inputs, n_valid, causal=False)

    def with_mask_token(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, L, H]`` -> ``[B, L + 1, H]`` with the mask token vector at position ``lengths`` of each row."""
        padded = torch.cat([inputs, inputs.new_zeros(inputs.shape[0], 1, inputs.shape[2])], dim=1)
        at_mask = torch.arange(padded.shape[1], device=inputs.device) == lengths.to(inputs.device).unsqueeze(1)
        mask_vector = self.item_embedding.weight[self.mask_id]
        return torch.where(at_mask.unsqueeze(-1), mask_vector, padded)

    # -- the learner interface ------------------------------------------------------------------------
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(inputs.device)
        padded = self.with_mask_token(inputs, lengths)
        check_input_length(padded.shape[1], self.max_len + 1, self.name)
        return self.output_head(self.encoder(padded, lengths + 1, causal=False, at=lengths))

    def training_loss(self, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Cloze loss of a batch of real examples: the target is appended at position ``lengths`` and always
        masked; every real item is also masked independently with probability ``mask_ratio``; the loss is the
        mean cross-entropy over all masked positions.

        The random mask comes from ``generator`` when given (drawn on the generator's device, then moved to
        the batch's), otherwise from torch's global RNG on the batch's device.
        """
        masked = self.draw_cloze_mask(lengths.to(ids.device), ids.shape[1], generator)
        return self.cloze_loss(ids, lengths, targets, masked)

    def window_loss(self, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The cloze objective already predicts masked items at every position of the window."""
        return self.training_loss(ids, lengths, targets)

    # -- cloze objective ------------------------------------------------------------------------------
    def draw_cloze_mask(self, lengths: torch.Tensor, n_positions: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Bool ``[B, n_positions + 1]``: the positions to mask. Position ``lengths`` (the appended target) is
        always masked; each real position ``< lengths`` with probability ``mask_ratio``."""
        shape = (lengths.shape[0], n_positions + 1)
        device = generator.device if generator is not None else lengths.device
        draw = torch.rand(shape, generator=generator, device=device).to(lengths.device)
        real = valid_positions(lengths, n_positions + 1, lengths.device)
        target = torch.arange(n_positions + 1, device=lengths.device) == lengths.unsqueeze(1)
        return (real & (draw < self.config.mask_ratio)) | target

    def cloze_loss(self, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                   masked: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy at the ``masked`` positions (bool ``[B, L + 1]``, only positions ``<= lengths``)
        of the sequences ``ids`` ``[B, L]`` with ``targets`` appended at position ``lengths``."""
        lengths = lengths.to(ids.device)
        full = torch.cat([ids, ids.new_zeros(ids.shape[0], 1)], dim=1)
        full = full.scatter(1, lengths.unsqueeze(1), targets.to(ids.device).unsqueeze(1))
        masked = masked.to(ids.device) & valid_positions(lengths + 1, full.shape[1], ids.device)
        hidden = self.hidden_states(self.embed_ids(full.masked_fill(masked, self.mask_id)), lengths + 1)
        features = self.output_head(hidden[masked])  # [n_masked, H]
        return self.loss(features, full[masked])
