"""The summary's per-position item distributions, streamed in blocks so that ``n × L × |I|`` is never held.

A summary file stores the Tucker factors; the distribution at synthetic sequence ``a`` and position ``b`` is
``softmax(W[a, b] · V^T)`` with ``W = G ×1 U ×2 T`` (:mod:`td3rec.summary.readout`). A Farzi summary has the
same form with ``W = latent · D`` (factorised decoder) or ``W = latent`` and ``decoder^T`` in place of ``V``
(full decoder; :mod:`td3rec.summary.factors`). Export and inspection
need the distributions themselves (argmax, sampling, top items, entropy), so :class:`SummaryDistributions`
computes them one synthetic sequence at a time, and within a sequence at most ``max_elements // |I|``
positions at a time (at least one): peak memory is ``O(max(max_elements, |I|))`` whatever ``n`` and ``L``.

Computation is in float64: these are one-off reports over up to millions of items, where float32 sums of
probabilities and entropies lose digits, and the factors are small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from td3rec.errors import DataError
from td3rec.summary.factors import summary_factors
from td3rec.summary.io import load_summary
from td3rec.summary.readout import DENSE_MAX_ELEMENTS, tucker_core_product

#: tensors a TD3 summary file must hold (Farzi files: :data:`td3rec.summary.factors.REQUIRED_TENSORS`)
FACTOR_NAMES = ("U", "T", "G", "V")


@dataclass
class PositionBlock:
    """Distributions of consecutive positions ``start .. start + m - 1`` of synthetic sequence ``sequence``.

    Attributes:
        sequence: synthetic sequence index ``a`` (0-based).
        start: first position ``b`` of the block (0-based).
        log_probs: ``[m, |I|]`` float64 ``log softmax(W[a, b] V^T)``; column ``j`` is internal item ``j + 1``.
    """

    sequence: int
    start: int
    log_probs: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        """``[m, |I|]`` probabilities."""
        return self.log_probs.exp()

    @property
    def positions(self) -> range:
        """The positions this block covers."""
        return range(self.start, self.start + self.log_probs.shape[0])


@dataclass
class SummaryDistributions:
    """A summary's ``W [n, L, d3]`` and ``V [|I|, d3]`` (float64, CPU) with the raw item tokens.

    Attributes:
        W: the read-out queries (the Tucker core product); the logits at ``(a, b)`` are ``W[a, b] · V^T``.
        V: the read-out keys (the item factor; a full Farzi decoder's transpose); row ``j`` is internal item
            ``j + 1``.
        item_tokens: raw item id of internal item ``j + 1`` at index ``j`` (the dataset's id map).
        metadata: the summary file's JSON metadata (empty for an in-memory summary).
        source: where it came from, for messages.
        support_size: k > 0 restricts every position to its top-k items (as distilled); 0 = every item.
    """

    W: torch.Tensor
    V: torch.Tensor
    item_tokens: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "summary"
    support_size: int = 0

    def __post_init__(self) -> None:
        if self.W.dim() != 3 or self.V.dim() != 2 or self.W.shape[2] != self.V.shape[1]:
            raise ValueError(f"expected W [n, L, d3] and V [I, d3], got {tuple(self.W.shape)} and {tuple(self.V.shape)}")
        if len(self.item_tokens) != self.V.shape[0]:
            raise ValueError(f"{len(self.item_tokens)} item tokens for {self.V.shape[0]} items")

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_factors(
        cls,
        U: torch.Tensor,
        T: torch.Tensor,
        G: torch.Tensor,
        V: torch.Tensor,
        item_tokens: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        source: str = "summary",
    ) -> "SummaryDistributions":
        """From the four Tucker factors; without ``item_tokens`` items are named by their internal ids."""
        f64 = {"dtype": torch.float64, "device": "cpu"}
        W = tucker_core_product(G.detach().to(**f64), U.detach().to(**f64), T.detach().to(**f64))
        tokens = [str(t) for t in item_tokens] if item_tokens is not None else [str(j) for j in range(1, V.shape[0] + 1)]
        return cls(W, V.detach().to(**f64), tokens, dict(metadata or {}), source)

    @classmethod
    def from_file(cls, path: str | Path) -> "SummaryDistributions":
        """Load a summary file; a file that is missing, unreadable, or lacks factors or the item id map is a
        :class:`DataError` (one line for the CLI)."""
        tensors, meta = load_summary(path)
        f64 = {"dtype": torch.float64, "device": "cpu"}
        tensors = {k: v.to(**f64) for k, v in tensors.items()}
        factors = summary_factors(tensors, meta, f"summary {path}")  # TD3 or Farzi; checks tensors and shapes
        tokens = meta.get("item_tokens")
        n_items = factors.keys.shape[0]
        if not isinstance(tokens, list) or len(tokens) != n_items:
            have = f"{len(tokens)} item tokens" if isinstance(tokens, list) else "no item id map"
            raise DataError(f"summary {path} has {have} for {n_items} items; the raw item ids cannot be restored "
                            "(re-distil with this td3rec version)")
        if meta.get("n_items") is not None and meta["n_items"] != n_items:
            raise DataError(f"summary {path}: metadata says {meta['n_items']} items, the summary has {n_items}; "
                            "the file is inconsistent")
        return cls(factors.queries, factors.keys.contiguous(), [str(t) for t in tokens],
                   meta, str(path), factors.support_size)

    # -- shape --------------------------------------------------------------------------------------
    @property
    def n_sequences(self) -> int:
        """Number of synthetic sequences ``n``."""
        return self.W.shape[0]

    @property
    def seq_len(self) -> int:
        """Length ``L`` of every synthetic sequence."""
        return self.W.shape[1]

    @property
    def n_items(self) -> int:
        """Catalogue size ``|I|``."""
        return self.V.shape[0]

    # -- distributions ------------------------------------------------------------------------------
    def positions_per_block(self, max_elements: int = DENSE_MAX_ELEMENTS) -> int:
        """How many positions of one sequence a block holds: ``max_elements // |I|``, at least 1, at most ``L``."""
        if max_elements < 1:
            raise ValueError(f"max_elements must be positive, got {max_elements}")
        return max(1, min(self.seq_len, max_elements // self.n_items))

    def blocks(self, max_elements: int = DENSE_MAX_ELEMENTS, sequences: Iterable[int] | None = None) -> Iterator[PositionBlock]:
        """Every position's log-distribution, sequence by sequence, position blocks in order.

        A block holds at most ``max(max_elements, |I|)`` numbers (see :meth:`positions_per_block`).
        """
        step = self.positions_per_block(max_elements)
        for a in sequences if sequences is not None else range(self.n_sequences):
            for start in range(0, self.seq_len, step):
                logits = self._logits(self.W[a, start : start + step])
                yield PositionBlock(a, start, torch.log_softmax(logits, dim=-1))

    def _logits(self, W: torch.Tensor) -> torch.Tensor:
        """``W V^T`` for a block of positions, ``-inf`` outside each position's top-k support."""
        logits = W @ self.V.T
        if 0 < self.support_size < self.n_items:  # the block's scores are at hand: no second pass over V
            top = logits.topk(self.support_size, dim=-1)
            logits = torch.full_like(logits, float("-inf")).scatter(-1, top.indices, top.values)
        return logits

    def item_log_probs(self, sequence: int, items: torch.Tensor) -> torch.Tensor:
        """``log p[a, b, items]`` for every position ``b`` of one sequence: ``[L, len(items)]`` (0-based columns).

        Computes the normaliser chunk by chunk, so only ``L × len(items)`` and one block are held.
        """
        step = self.positions_per_block()
        rows = []
        for start in range(0, self.seq_len, step):
            logits = self._logits(self.W[sequence, start : start + step])
            rows.append(logits[:, items] - torch.logsumexp(logits, dim=-1, keepdim=True))
        return torch.cat(rows)

    def uniform_entropy(self) -> float:
        """``log |I|`` (``log k`` with a top-k support): the largest entropy any position can have."""
        k = self.support_size if 0 < self.support_size < self.n_items else self.n_items
        return math.log(k)

