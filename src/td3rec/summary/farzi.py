"""Farzi Data (Sachdeva et al.) as a second summary method (DESIGN §6): a latent summary ``n × L × d`` times a
learned decoder, softmax over items at every position.

``S[a, b, :] = softmax_items(latent[a, b] · decoder)``. Two decoders (``FarziConfig.decoder``):

``"factorised"`` (default)
    ``decoder = D · V^T`` with a learned ``D [d, d3]`` and the fixed item factor ``V [|I|, d3]`` (the teacher's
    item embedding, as in TD3). The logits are ``(latent · D) · V^T``, so ``W = latent · D [n, L, d3]`` plugs
    into the same attention read-out as TD3's Tucker core product (:func:`~td3rec.summary.readout.soft_readout`,
    queries ``W``, keys ``V``, values ``E``): the ``n × L × |I|`` tensor is never built, and the summary stays
    small for large catalogues.
``"full"``
    a plain learned ``decoder [d, |I|]`` (Farzi's original form). Its logits ``latent · decoder`` have no
    low-rank structure through item factors; the read-out is the plain ``softmax(latent · decoder) · E``
    (materialised one batch at a time). Towards the distiller's inner loop it presents the same interface
    with queries ``latent`` and keys ``decoder^T``: ``softmax(latent · (decoder^T)^T) · E`` is that very
    product. ``V`` is still kept (not learned) so that the ``shared-item-factor`` evaluation protocol can start
    learners from it, as for every other kind of training data.

The interface is the one :class:`~td3rec.summary.tucker.TuckerSummary` offers the distiller:
:meth:`FarziSummary.core_product` (the read-out queries), :attr:`FarziSummary.item_factor` (the read-out
keys), :meth:`~FarziSummary.tensors`, :meth:`~FarziSummary.num_parameters`, :meth:`~FarziSummary.metadata`
and :meth:`~FarziSummary.source`.

Initialisation: ``latent ~ N(0, init_std²)`` (``init_std = 0.02``, as TD3's U and T) and the decoder
Kaiming-normal in its fan-in (``N(0, 2 / d)``), so the initial summary is close to uniform over items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from td3rec.summary.readout import soft_readout

FARZI_DECODERS = ("factorised", "full")


@dataclass
class FarziConfig:
    """Shape and initialisation of a :class:`FarziSummary`; ``d3`` and ``|I|`` come from the item factor."""

    #: number of synthetic sequences ``n``
    n_sequences: int = 30
    #: length ``L`` of every synthetic sequence
    seq_len: int = 50
    #: latent width ``d``
    latent_dim: int = 8
    #: ``factorised`` (decoder = D · V^T) or ``full`` (a learned ``d × |I|`` decoder)
    decoder: str = "factorised"
    #: standard deviation of the latent's normal initialisation
    init_std: float = 0.02
    #: learn ``V`` as well (factorised decoder only)
    learn_item_factor: bool = False
    #: item chunk of the read-out; ``None`` = let :func:`~td3rec.summary.readout.soft_readout` decide
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_sequences", "seq_len", "latent_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FarziConfig.{name} must be positive, got {getattr(self, name)}")
        if self.decoder not in FARZI_DECODERS:
            raise ValueError(f"FarziConfig.decoder must be one of {', '.join(FARZI_DECODERS)}, not {self.decoder!r}")
        if self.learn_item_factor and self.decoder == "full":
            raise ValueError("learn_item_factor applies to the factorised decoder only (the full decoder has no V "
                             "in its read-out)")
        if self.init_std < 0:
            raise ValueError("FarziConfig.init_std must be non-negative")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"FarziConfig.chunk_size must be positive, got {self.chunk_size}")


class FarziSummary(nn.Module):
    """Learned ``latent [n, L, d]`` and decoder (``D [d, d3]`` or ``decoder [d, |I|]``) over a fixed ``V``."""

    def __init__(self, config: FarziConfig, item_factor: torch.Tensor,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if item_factor.dim() != 2 or item_factor.shape[0] < 1:
            raise ValueError(f"item factor must be [n_items, d3], got {tuple(item_factor.shape)}")
        self.config = config
        V = item_factor.detach().clone()
        kw = {"dtype": V.dtype, "device": V.device}
        d = config.latent_dim
        self.latent = nn.Parameter(_normal((config.n_sequences, config.seq_len, d), config.init_std, generator, **kw))
        width = V.shape[1] if config.decoder == "factorised" else V.shape[0]
        weight = nn.Parameter(_normal((d, width), math.sqrt(2.0 / d), generator, **kw))
        if config.decoder == "factorised":
            self.D = weight
        else:
            self.decoder = weight
        if config.learn_item_factor:
            self.V = nn.Parameter(V)
        else:
            self.register_buffer("V", V)

    # -- shape ----------------------------------------------------------------------------------
    @property
    def factorised(self) -> bool:
        return self.config.decoder == "factorised"

    @property
    def n_items(self) -> int:
        return self.V.shape[0]

    @property
    def item_factor(self) -> torch.Tensor:
        """Keys of the read-out (logits = ``core_product() @ item_factor.T``): ``V`` for the factorised decoder,
        ``decoder^T [|I|, d]`` for the full one."""
        return self.V if self.factorised else self.decoder.T

    @property
    def shared_item_factor(self) -> torch.Tensor:
        """``V``: what the ``shared-item-factor`` protocol starts a learner's item embedding from."""
        return self.V

    def num_parameters(self, include_item_factor: bool = False) -> int:
        """``n·L·d + d·d3`` (factorised) or ``n·L·d + d·|I|`` (full); ``+ |I|·d3`` with ``V``."""
        decoder = self.D if self.factorised else self.decoder
        size = self.latent.numel() + decoder.numel()
        return size + (self.V.numel() if include_item_factor else 0)

    # -- the summary ----------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """What a summary file stores: ``latent``, ``D`` or ``decoder``, and ``V`` (detached)."""
        out = {"latent": self.latent.detach()}
        if self.factorised:
            out["D"] = self.D.detach()
        else:
            out["decoder"] = self.decoder.detach()
        out["V"] = self.V.detach()
        return out

    def metadata(self) -> dict:
        """The method's entries of a summary file's metadata."""
        return {"method": "farzi", "farzi_decoder": self.config.decoder, "latent_dim": self.config.latent_dim}

    def core_product(self) -> torch.Tensor:
        """Read-out queries: ``W = latent · D [n, L, d3]`` (factorised) or ``latent [n, L, d]`` (full)."""
        return self.latent @ self.D if self.factorised else self.latent

    def logits(self) -> torch.Tensor:
        """``[n, L, |I|]`` logits, materialised (inspection and tests only)."""
        return self.latent @ (self.D @ self.V.T) if self.factorised else self.latent @ self.decoder

    def probabilities(self) -> torch.Tensor:
        """The summary's distributions ``[n, L, |I|]``, materialised (inspection and tests only)."""
        return torch.softmax(self.logits(), dim=-1)

    def readout(self, E: torch.Tensor) -> torch.Tensor:
        """Soft inputs ``S @ E [n, L, H]``: the chunkable attention read-out (factorised) or the plain
        materialised product (full)."""
        if E.shape[0] != self.n_items:
            raise ValueError(f"learner has {E.shape[0]} item vectors, the summary {self.n_items} items")
        if self.factorised:
            return soft_readout(self.core_product(), self.V, E, self.config.chunk_size)
        return decoded_readout(self.latent, self.decoder, E)

    def source(self, chunk_size: int | None = None, support_size: int = 0):
        """The summary (detached) as soft training data for evaluation learners."""
        from td3rec.evaluation.sources import DecodedSoftSequences, SoftSequences

        if self.factorised:
            return SoftSequences(self.core_product().detach(), self.V.detach(), chunk_size, support_size)
        return DecodedSoftSequences(self.latent.detach(), self.decoder.detach(), self.V.detach())


def decoded_readout(latent: torch.Tensor, decoder: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """``softmax(latent @ decoder) @ E``: the plain read-out of a full Farzi decoder (materialises the item axis
    for the given rows)."""
    return torch.softmax(latent @ decoder, dim=-1) @ E


def _normal(shape: tuple[int, ...], std: float, generator: torch.Generator | None, dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return (torch.randn(shape, generator=generator, dtype=dtype, device=source) * std).to(device)
