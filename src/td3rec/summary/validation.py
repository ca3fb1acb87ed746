"""The content check of a summary file, run by :func:`td3rec.summary.io.load_summary` on every read.

A file can be a valid safetensors file with a JSON header and still be no summary td3rec could have written:
metadata that is a list, tensors in another dtype, NaN factors, zero sequences, shapes that contradict the
metadata. Each is one :class:`~td3rec.errors.DataError` line here, before any reader (evaluate, export,
inspect, proxy) computes anything from it. Consistency *between* the tensors (that the factors multiply)
is checked by :func:`td3rec.summary.factors.summary_factors`.
"""

from __future__ import annotations

from typing import Any

import torch

from td3rec.errors import DataError

#: the dtype of every tensor td3rec writes into a summary (the summary is kept in float32 whatever the
#: precision of the learner work)
SUMMARY_DTYPE = torch.float32
#: the dimensions of each tensor a summary can hold
TENSOR_DIMS = {"U": 2, "T": 2, "G": 3, "V": 2, "latent": 3, "D": 2, "decoder": 2}
#: the type of each metadata entry td3rec writes (entries not listed are free-form)
METADATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "method": str, "farzi_decoder": str, "latent_dim": int, "dataset": str, "dataset_fingerprint": str,
    "n_items": int, "item_tokens": list, "teacher_model": str, "teacher_options": dict, "teacher_run": str,
    "config": dict, "factor_shapes": dict, "epoch": int, "valid": dict, "support_size": int,
    "td3rec_version": str, "models": list, "teacher_runs": dict,
}
#: the smallest synthetic sequence length a learner can be trained on (one input position and one target)
MIN_SEQ_LEN = 2


def check_summary_content(tensors: dict[str, Any], meta: Any, where: str) -> None:
    """Refuse a summary whose metadata or tensors td3rec could not have written (``where`` names the file)."""
    _check_metadata(meta, where)
    if not tensors:
        raise DataError(f"{where} holds no tensors; it is not a td3rec summary")
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise DataError(f"{where}: {name} is not a tensor")
        if tensor.dtype != SUMMARY_DTYPE:
            raise DataError(f"{where}: tensor {name} is {str(tensor.dtype).replace('torch.', '')}; td3rec writes "
                            "summaries in float32 (the file was changed or written by another tool)")
        if name in TENSOR_DIMS and tensor.dim() != TENSOR_DIMS[name]:
            raise DataError(f"{where}: tensor {name} has {tensor.dim()} dimensions, a summary's has "
                            f"{TENSOR_DIMS[name]}")
        if not torch.isfinite(tensor).all():
            raise DataError(f"{where}: tensor {name} holds NaN or infinite values; td3rec never writes such a "
                            "summary (use the run's summary_last/summary_best, or re-distil)")
    shapes = meta.get("factor_shapes")
    if shapes is not None:
        actual = {name: list(t.shape) for name, t in tensors.items()}
        if shapes != actual:
            raise DataError(f"{where}: its metadata records factor shapes {shapes}, the tensors have {actual}")
    n, seq_len = _sequences(tensors, meta)
    if n is not None and n < 1:
        raise DataError(f"{where} holds no synthetic sequence (n = {n}); there is nothing to train on")
    if seq_len is not None and seq_len < MIN_SEQ_LEN:
        raise DataError(f"{where}: its sequences have length {seq_len}; a learner needs at least {MIN_SEQ_LEN}")
    config = meta.get("config") or {}
    for key, value in (("n_sequences", n), ("seq_len", seq_len)):
        recorded = config.get(key)
        if value is not None and recorded is not None and recorded != value:
            raise DataError(f"{where}: its metadata says {key} = {recorded!r}, the tensors hold {value}")
    items = tensors["V"].shape[0] if "V" in tensors and tensors["V"].dim() == 2 else None
    if items is not None and items < 1:
        raise DataError(f"{where} has no items (V is empty)")
    if items is not None and meta.get("n_items") is not None and meta["n_items"] != items:
        raise DataError(f"{where}: its metadata says {meta['n_items']} items, V has {items}")
    tokens = meta.get("item_tokens")
    if tokens is not None and items is not None and len(tokens) != items:
        raise DataError(f"{where} has {len(tokens)} item tokens for {items} items; the raw item ids cannot be "
                        "restored (re-distil with this td3rec version)")


def _check_metadata(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise DataError(f"{where}: its metadata is a {type(meta).__name__}, not a mapping; it is not a td3rec "
                        "summary")
    for key, expected in METADATA_TYPES.items():
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            name = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise DataError(f"{where}: metadata entry {key!r} is {type(value).__name__} {_short(value)}, expected "
                            f"{name}")
    tokens = meta.get("item_tokens")
    if tokens is not None and not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{where}: metadata entry 'item_tokens' must be a list of item id strings")
    shapes = meta.get("factor_shapes")
    if shapes is not None and not all(isinstance(v, list) and all(isinstance(d, int) for d in v)
                                      for v in shapes.values()):
        raise DataError(f"{where}: metadata entry 'factor_shapes' must map tensor names to lists of sizes")
    config = meta.get("config")
    if config is not None:
        for key in ("n_sequences", "seq_len", "max_len"):
            value = config.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise DataError(f"{where}: metadata entry 'config.{key}' is {_short(value)}, expected an integer")


def _sequences(tensors: dict[str, torch.Tensor], meta: dict) -> tuple[int | None, int | None]:
    """``(n, L)`` from the tensors: ``U [n, d1]`` and ``T [L, d2]`` (TD3) or ``latent [n, L, d]`` (Farzi)."""
    if "latent" in tensors:
        return int(tensors["latent"].shape[0]), int(tensors["latent"].shape[1])
    n = int(tensors["U"].shape[0]) if "U" in tensors else None
    seq_len = int(tensors["T"].shape[0]) if "T" in tensors else None
    return n, seq_len


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
