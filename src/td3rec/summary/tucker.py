"""The Tucker-factored synthetic sequence summary of TD3 (DESIGN §3).

``S[a, b, :] = softmax_items(W[a, b] V^T)`` with ``W = G ×1 U ×2 T``. ``U`` (synthetic users), ``T``
(positions) and ``G`` (relation core) are learned; ``V`` (items) is the item embedding of a model pretrained
on the real data and stays fixed, which is what keeps the summary small for large catalogues. ``S`` itself is
never stored: learners read it through :meth:`TuckerSummary.readout`.

Initialisation (as in the reference TD3 code): ``U`` and ``T`` ~ ``N(0, init_std²)`` with ``init_std = 0.02``;
``G`` ~ ``N(0, 2 / (d2 · d3))`` (He/Kaiming-normal, fan-in mode of ``torch.nn.init.kaiming_normal_`` on a
``d1 × d2 × d3`` tensor). The logits start tiny, so the initial summary is close to uniform over items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from td3rec.summary.readout import ReadoutMethod, soft_readout, tucker_core_product

Rows = torch.Tensor | Sequence[int] | None


@dataclass
class TuckerConfig:
    """Shape and initialisation of a :class:`TuckerSummary`; ``d3`` and ``|I|`` come from the item factor."""

    #: number of synthetic sequences ``n`` (rows of ``U``)
    n_sequences: int = 30
    #: length ``L`` of every synthetic sequence (rows of ``T``)
    seq_len: int = 50
    #: rank of the synthetic-user mode (columns of ``U``)
    d1: int = 8
    #: rank of the position mode (columns of ``T``)
    d2: int = 8
    #: standard deviation of the normal initialisation of ``U`` and ``T``
    init_std: float = 0.02
    #: standard deviation of ``G``'s normal initialisation; ``None`` = Kaiming ``sqrt(2 / (d2 · d3))``
    core_std: float | None = None
    #: learn ``V`` as well (an ablation); by default it is a fixed buffer
    learn_item_factor: bool = False
    #: item chunk of the read-out; ``None`` = let :func:`~td3rec.summary.readout.soft_readout` decide
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_sequences", "seq_len", "d1", "d2"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TuckerConfig.{name} must be positive, got {getattr(self, name)}")
        if self.init_std < 0 or (self.core_std is not None and self.core_std < 0):
            raise ValueError("TuckerConfig: initialisation standard deviations must be non-negative")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"TuckerConfig.chunk_size must be positive, got {self.chunk_size}")


class TuckerSummary(nn.Module):
    """Learned ``U [n, d1]``, ``T [L, d2]``, ``G [d1, d2, d3]`` over a fixed item factor ``V [|I|, d3]``.

    ``V``'s row ``j - 1`` is item ``j`` (the convention of ``model.item_vectors()``). ``V`` is copied, so the
    teacher's embedding is never modified; it is a buffer (saved with the summary, not returned by
    :meth:`parameters`) unless ``config.learn_item_factor``.
    """

    def __init__(
        self,
        config: TuckerConfig,
        item_factor: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if item_factor.dim() != 2 or item_factor.shape[0] < 1:
            raise ValueError(f"item factor must be [n_items, d3], got {tuple(item_factor.shape)}")
        self.config = config
        V = item_factor.detach().clone()
        kw = {"dtype": V.dtype, "device": V.device}
        d3 = V.shape[1]
        core_std = config.core_std if config.core_std is not None else math.sqrt(2.0 / (config.d2 * d3))
        self.U = nn.Parameter(_normal((config.n_sequences, config.d1), config.init_std, generator, **kw))
        self.T = nn.Parameter(_normal((config.seq_len, config.d2), config.init_std, generator, **kw))
        self.G = nn.Parameter(_normal((config.d1, config.d2, d3), core_std, generator, **kw))
        if config.learn_item_factor:
            self.V = nn.Parameter(V)
        else:
            self.register_buffer("V", V)

    # -- shape ----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        """``|I|``, the number of real items the summary distributes over."""
        return self.V.shape[0]

    @property
    def item_factor(self) -> torch.Tensor:
        """``V [|I|, d3]`` (a buffer, or a parameter when the item factor is learned)."""
        return self.V

    @property
    def d3(self) -> int:
        """Rank of the item mode (the item factor's width)."""
        return self.V.shape[1]

    def num_parameters(self, include_item_factor: bool = False) -> int:
        """Size of the summary in numbers: ``n·d1 + L·d2 + d1·d2·d3`` (``+ |I|·d3`` with ``V``) (DESIGN §6)."""
        size = self.U.numel() + self.T.numel() + self.G.numel()
        return size + (self.V.numel() if include_item_factor else 0)

    # -- the summary ----------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """The four Tucker factors by name (``U``, ``T``, ``G``, ``V``), detached: what a summary file stores."""
        return {"U": self.U.detach(), "T": self.T.detach(), "G": self.G.detach(), "V": self.V.detach()}

    def metadata(self) -> dict:
        """The method's entries of a summary file's metadata."""
        return {"method": "td3"}

    @property
    def shared_item_factor(self) -> torch.Tensor:
        """``V``: what the ``shared-item-factor`` protocol starts a learner's item embedding from."""
        return self.V

    def source(self, chunk_size: int | None = None, support_size: int = 0):
        """The summary (detached) as soft training data for evaluation learners (restricted to its top-k support
        with ``support_size`` k > 0)."""
        from td3rec.evaluation.sources import SoftSequences

        return SoftSequences(self.core_product().detach(), self.V.detach(), chunk_size, support_size)

    def core_product(self, rows: Rows = None) -> torch.Tensor:
        """``W = G ×1 U ×2 T`` for the chosen synthetic sequences (all by default): ``[rows, L, d3]``."""
        return tucker_core_product(self.G, self.U[_index(rows, self.U.device)], self.T)

    def readout(self, E: torch.Tensor, rows: Rows = None, method: ReadoutMethod = "auto") -> torch.Tensor:
        """Soft inputs ``S[rows] @ E`` for a learner with item embeddings ``E = model.item_vectors()``.

        Shape ``[rows, L, H]``; computed as an attention read-out, never materialising ``S``.
        """
        if E.shape[0] != self.n_items:
            raise ValueError(f"learner has {E.shape[0]} item vectors, the summary {self.n_items} items")
        return soft_readout(self.core_product(rows), self.V, E, self.config.chunk_size, method)

    def probabilities(self, rows: Rows = None, positions: Rows = None) -> torch.Tensor:
        """The summary's distributions ``S[rows][:, positions]``, shape ``[rows, positions, |I|]``.

        Materialises the item axis: for inspection, export and tests only — training goes through
        :meth:`readout`.
        """
        W = self.core_product(rows)[:, _index(positions, self.T.device)]
        return torch.softmax(W @ self.V.T, dim=-1)


def _normal(
    shape: tuple[int, ...], std: float, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    # drawn on the generator's device so a CPU generator seeds a CUDA summary identically
    source = generator.device if generator is not None else device
    return (torch.randn(shape, generator=generator, dtype=dtype, device=source) * std).to(device)


def _index(rows: Rows, device: torch.device) -> torch.Tensor | slice:
    if rows is None:
        return slice(None)
    if isinstance(rows, torch.Tensor):
        return rows.to(device=device, dtype=torch.long)
    return torch.as_tensor(list(rows), dtype=torch.long, device=device)
