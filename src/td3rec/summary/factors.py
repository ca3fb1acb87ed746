"""A summary file of either method (TD3's Tucker factors or Farzi Data) as read-out factors.

Every summary's distribution at ``(a, b)`` is ``softmax(queries[a, b] · keys^T)``:

=====================  =========================  ====================
file (``method``)      queries ``[n, L, k]``      keys ``[|I|, k]``
=====================  =========================  ====================
``td3``                ``W = G ×1 U ×2 T``        ``V``
``farzi`` factorised   ``latent · D``             ``V``
``farzi`` full         ``latent``                 ``decoder^T``
=====================  =========================  ====================

``item_factor`` is ``V`` in every case: the item embedding the ``shared-item-factor`` protocol starts
learners from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from td3rec.errors import DataError
from td3rec.summary.io import load_summary
from td3rec.summary.readout import tucker_core_product

#: tensors each kind of summary file holds
REQUIRED_TENSORS = {
    ("td3", None): ("U", "T", "G", "V"),
    ("farzi", "factorised"): ("latent", "D", "V"),
    ("farzi", "full"): ("latent", "decoder", "V"),
}


@dataclass
class SummaryFactors:
    """Read-out factors of a summary file.

    Attributes:
        queries: ``[n, L, k]``; the logits at ``(a, b)`` are ``queries[a, b] · keys^T``.
        keys: ``[|I|, k]``; row ``j`` is internal item ``j + 1``.
        item_factor: ``V [|I|, d3]``.
        method: ``td3`` or ``farzi``.
        decoder: Farzi's decoder (``factorised`` or ``full``); ``None`` for TD3.
        metadata: the file's JSON metadata.
        support_size: the top-k support every position is restricted to (0 = every item;
            :mod:`td3rec.summary.support`).
    """

    queries: torch.Tensor
    keys: torch.Tensor
    item_factor: torch.Tensor
    method: str = "td3"
    decoder: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    support_size: int = 0

    @property
    def materialised(self) -> bool:
        """Whether the read-out is the plain materialised one (a Farzi full decoder)."""
        return self.method == "farzi" and self.decoder == "full"

    def source(self, device: torch.device | str = "cpu", chunk_size: int | None = None):
        """Soft training data for evaluation learners, on ``device``."""
        from td3rec.evaluation.sources import DecodedSoftSequences, SoftSequences

        if self.materialised:
            return DecodedSoftSequences(self.queries.to(device), self.keys.T.contiguous().to(device),
                                        self.item_factor.to(device))
        return SoftSequences(self.queries.to(device), self.keys.to(device), chunk_size, self.support_size)


def summary_factors(tensors: dict[str, torch.Tensor], meta: dict, where: str = "summary") -> SummaryFactors:
    """The read-out factors of a loaded summary (``tensors`` and ``meta`` of :func:`load_summary`)."""
    method = meta.get("method", "td3")
    decoder = meta.get("farzi_decoder", "factorised") if method == "farzi" else None
    required = REQUIRED_TENSORS.get((method, decoder))
    if required is None:
        raise DataError(f"{where}: unknown summary method {method!r} (decoder {decoder!r}); this td3rec reads "
                        "td3 and farzi (factorised or full) summaries")
    missing = [name for name in required if name not in tensors]
    if missing:
        raise DataError(f"{where} has no {', '.join(missing)} tensor; it is not a valid {method} summary")
    try:
        if method == "td3":
            queries = tucker_core_product(tensors["G"], tensors["U"], tensors["T"])
            keys = tensors["V"]
        elif decoder == "factorised":
            queries, keys = tensors["latent"] @ tensors["D"], tensors["V"]
        else:
            queries, keys = tensors["latent"], tensors["decoder"].T
        if queries.dim() != 3 or keys.dim() != 2 or queries.shape[-1] != keys.shape[1]:
            raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} do not fit")
        if tensors["V"].dim() != 2 or tensors["V"].shape[0] != keys.shape[0]:
            raise ValueError(f"V {tuple(tensors['V'].shape)} and keys {tuple(keys.shape)} disagree on items")
    except (RuntimeError, ValueError) as err:
        raise DataError(f"{where} has inconsistent tensor shapes ({err})") from None
    support_size = meta.get("support_size", 0)
    if not isinstance(support_size, int) or isinstance(support_size, bool) or support_size < 0:
        raise DataError(f"{where}: support_size {support_size!r} in its metadata is not a non-negative integer")
    return SummaryFactors(queries, keys, tensors["V"], method, decoder, meta, support_size)


def load_summary_factors(path: str | Path, expected_fingerprint: str | None = None) -> SummaryFactors:
    """Load a summary file of either method; with ``expected_fingerprint`` refuse one of other data."""
    tensors, meta = load_summary(path, expected_fingerprint=expected_fingerprint)
    return summary_factors(tensors, meta, f"summary {path}")
