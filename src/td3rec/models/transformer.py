"""Transformer layers of SASRec and BERT4Rec, as in RecBole (post-norm blocks, GELU feed-forward).

Attention is written with plain tensor operations rather than ``nn.MultiheadAttention`` or fused kernels:
the distillation inner loop calls the learner through ``torch.func.functional_call`` and differentiates
through its training steps (double backward), which fused attention kernels do not support.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from td3rec.models.positions import valid_positions


def attention_mask(lengths: torch.Tensor, n_positions: int, causal: bool, device: torch.device) -> torch.Tensor:
    """Bool mask, ``True`` where a query may attend to a key: keys must be real positions (``< lengths``) and,
    if ``causal``, not after the query. Shape ``[B, 1, 1 or P, P]`` (broadcast over heads and queries)."""
    allowed = valid_positions(lengths, n_positions, device)[:, None, None, :]
    if causal:
        lower = torch.ones(n_positions, n_positions, dtype=torch.bool, device=device).tril()
        allowed = allowed & lower
    return allowed


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with output projection, dropout and a residual post-LayerNorm."""

    def __init__(self, hidden_size: int, n_heads: int, attn_dropout: float, hidden_dropout: float,
                 layer_norm_eps: float) -> None:
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_size = hidden_size // n_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_dropout = nn.Dropout(hidden_dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.n_heads, self.head_size).transpose(1, 2)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, P, H]``; ``allowed`` from :func:`attention_mask`. With ``queries`` ``[B, Q, H]`` (a few
        rows of ``x``) only those rows are computed (``allowed`` then has ``Q`` query rows)."""
        queries = x if queries is None else queries
        q = self._split_heads(self.query(queries))
        k, v = self._split_heads(self.key(x)), self._split_heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)
        # finite fill value: a fully masked row would give a uniform average instead of NaN
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        context = (probs @ v).transpose(1, 2).reshape(queries.shape)
        return self.layer_norm(self.out_dropout(self.dense(context)) + queries)


class FeedForward(nn.Module):
    """Point-wise feed-forward (dense, GELU, dense) with dropout and a residual post-LayerNorm."""

    def __init__(self, hidden_size: int, inner_size: int, hidden_dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        self.dense_in = nn.Linear(hidden_size, inner_size)
        self.dense_out = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(hidden_dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dense_out(nn.functional.gelu(self.dense_in(x)))
        return self.layer_norm(self.dropout(h) + x)


class TransformerBlock(nn.Module):
    """One encoder layer: self-attention then feed-forward."""

    def __init__(self, hidden_size: int, n_heads: int, inner_size: int, hidden_dropout: float,
                 attn_dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(hidden_size, n_heads, attn_dropout, hidden_dropout, layer_norm_eps)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, layer_norm_eps)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward(self.attention(x, allowed, queries))


class TransformerEncoder(nn.Module):
    """Learned absolute positions (counted from the left) + LayerNorm + dropout, then ``n_layers`` blocks."""

    def __init__(self, max_positions: int, n_layers: int, hidden_size: int, n_heads: int, inner_size: int,
                 hidden_dropout: float, attn_dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        self.position_embedding = nn.Embedding(max_positions, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.input_dropout = nn.Dropout(hidden_dropout)
        self.layers = nn.ModuleList(
            TransformerBlock(hidden_size, n_heads, inner_size, hidden_dropout, attn_dropout, layer_norm_eps)
            for _ in range(n_layers)
        )

    def forward(self, inputs: torch.Tensor, n_valid: torch.Tensor, causal: bool,
                at: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``[B, P, H]`` of input vectors ``[B, P, H]``; keys at positions ``>= n_valid`` are
        ignored (their own rows are computed but meaningless).

        With ``at`` (``[B]`` positions) only the hidden state at ``at[b]`` of each row is returned, ``[B, H]``,
        and the last layer computes just that query: the same value as gathering from the full output, at a
        fraction of the cost (the learners only ever need one position's features)."""
        n_positions = inputs.shape[1]
        positions = torch.arange(n_positions, device=inputs.device)
        x = self.input_dropout(self.input_norm(inputs + self.position_embedding(positions)))
        last = len(self.layers) - 1
        if at is None or last > 0:
            allowed = attention_mask(n_valid, n_positions, causal, inputs.device)
        for i, layer in enumerate(self.layers):
            if at is not None and i == last:
                index = at.to(device=inputs.device, dtype=torch.long)
                rows = torch.arange(x.shape[0], device=inputs.device)
                keys = valid_positions(n_valid, n_positions, inputs.device)
                if causal:
                    keys = keys & (positions.unsqueeze(0) <= index.unsqueeze(1))
                return layer(x, keys[:, None, None, :], x[rows, index].unsqueeze(1)).squeeze(1)
            x = layer(x, allowed)
        if at is not None:  # no layers: the input representation itself
            return x[torch.arange(x.shape[0], device=inputs.device), at.to(inputs.device)]
        return x


def transformer_encoder(config, max_positions: int) -> TransformerEncoder:
    """The encoder described by a SASRec/BERT4Rec config (fields ``n_layers`` ... ``layer_norm_eps``)."""
    return TransformerEncoder(
        max_positions=max_positions, n_layers=config.n_layers, hidden_size=config.hidden_size,
        n_heads=config.n_heads, inner_size=config.inner_size, hidden_dropout=config.hidden_dropout,
        attn_dropout=config.attn_dropout, layer_norm_eps=config.layer_norm_eps,
    )


def validate_transformer_config(config) -> None:
    """Value checks shared by the SASRec and BERT4Rec configs (raise the config's ``ConfigError``)."""
    config._positive("n_layers", "n_heads", "hidden_size", "inner_size")
    config._probability("hidden_dropout", "attn_dropout")
    if config.hidden_size % config.n_heads:
        raise config.error(f"hidden_size ({config.hidden_size}) must be a multiple of n_heads ({config.n_heads})")
    if config.layer_norm_eps <= 0 or config.initializer_range <= 0:
        raise config.error("layer_norm_eps and initializer_range must be > 0")


def reset_transformer_learner_(model: nn.Module) -> None:
    """RecBole's initialisation (normal weights, zero biases, unit LayerNorms); the padding row is zero."""
    model.apply(functools.partial(init_normal_, std=model.config.initializer_range))
    with torch.no_grad():
        model.item_embedding.weight[0].zero_()


def init_normal_(module: nn.Module, std: float) -> None:
    """RecBole's transformer initialisation: Linear/Embedding weights ~ N(0, std), zero biases, LayerNorm (1, 0).
    Use with ``model.apply(functools.partial(init_normal_, std=...))``."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
