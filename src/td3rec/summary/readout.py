"""Read-out of the Tucker summary without materialising the ``n × L × |I|`` tensor (DESIGN §3).

The summary's distribution at one position is ``p = softmax(w V^T)`` for a small vector ``w`` (a row of
``W = G ×1 U ×2 T``) and the fixed item factor ``V``. Everything a learner needs from ``p`` is a mixture over
items:

- its soft input ``p @ E`` (``E`` = the learner's item embeddings) — an attention read-out with queries
  ``W``, keys ``V`` and values ``E`` (scale 1);
- the target term of the soft cross-entropy ``sum_i p_i z_i = h . (p @ E)`` for logits ``z = h E^T``;
- the normaliser ``logsumexp(h E^T)`` of the learner's own softmax.

Three ways to compute an attention read-out (``method``):

``"dense"``
    ``softmax(W V^T) @ E`` with plain ops. Memory ``O(queries × items)``; fastest for small catalogues.
``"chunked"``
    An online (flash-attention style) log-sum-exp over item chunks: running max, running normaliser, running
    weighted sum. Its backward is written out by hand with the same chunking, and when a graph of the
    backward is requested (``create_graph=True``) each chunk of it is recomputed under
    :func:`torch.utils.checkpoint.checkpoint`, so forward, backward **and double backward** all keep memory
    ``O(queries × chunk + items × dims)`` — independent of ``queries × items``.
``"sdpa"``
    :func:`torch.nn.functional.scaled_dot_product_attention` with ``scale=1.0``. First-order only in general:
    on CPU (torch 2.13) SDPA either picks the fused flash kernel (4-D inputs, equal key and value widths),
    whose backward is **not** differentiable (double backward raises "derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"), or falls back to the
    math kernel, which materialises the full attention matrix. Use it for first-order work (e.g. training a
    learner on a finished summary), never inside a differentiable unroll.

``"auto"`` (the default) is ``"chunked"`` when ``chunk_size`` is given or ``queries × items`` exceeds
:data:`DENSE_MAX_ELEMENTS`, else ``"dense"``. Both are exact and twice differentiable, so the choice only
trades speed for memory.

Item rows follow the learner convention of ``model.item_vectors()``: row ``j - 1`` is item ``j``.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

ReadoutMethod = Literal["auto", "dense", "chunked", "sdpa"]

#: item chunk of the chunked path when ``"auto"`` picks it without an explicit ``chunk_size``
DEFAULT_CHUNK_SIZE = 4096
#: ``"auto"`` stays dense while ``queries × items`` is at most this (4M scores, 16 MiB in float32)
DENSE_MAX_ELEMENTS = 1 << 22


# -- Tucker core ------------------------------------------------------------------------------------
def tucker_core_product(G: torch.Tensor, U: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """``W = G ×1 U ×2 T``: ``G [d1, d2, d3]``, ``U [n, d1]``, ``T [L, d2]`` -> ``W [n, L, d3]``.

    The summary's logits are ``W V^T``; ``W`` is small (no item axis), so it is always materialised.
    """
    if G.dim() != 3 or U.dim() != 2 or T.dim() != 2:
        raise ValueError(f"expected G [d1,d2,d3], U [n,d1], T [L,d2]; got {tuple(G.shape)}, "
                         f"{tuple(U.shape)}, {tuple(T.shape)}")
    if U.shape[1] != G.shape[0] or T.shape[1] != G.shape[1]:
        raise ValueError(f"factor widths {U.shape[1]}, {T.shape[1]} do not match core {tuple(G.shape)}")
    return torch.einsum("aj,jkl,bk->abl", U, G, T)


# -- public read-outs -------------------------------------------------------------------------------
def soft_readout(
    W: torch.Tensor,
    V: torch.Tensor,
    E: torch.Tensor,
    chunk_size: int | None = None,
    method: ReadoutMethod = "auto",
) -> torch.Tensor:
    """``softmax(W V^T) @ E`` over the item axis: ``W [..., d3]``, ``V [I, d3]``, ``E [I, H]`` -> ``[..., H]``.

    The soft input of a learner at every summary position (``E`` = ``model.item_vectors()``). The module
    docstring describes the methods; under ``"auto"`` a ``chunk_size`` forces the chunked path.
    """
    _check_keys_values(W, V, E)
    q = W.reshape(-1, W.shape[-1])
    method = _resolve(method, chunk_size, q.shape[0], V.shape[0])
    if method == "dense":
        out = torch.softmax(q @ V.T, dim=-1) @ E
    elif method == "chunked":
        out, _ = _ChunkedSoftmaxAttention.apply(q, V, E, chunk_size or DEFAULT_CHUNK_SIZE)
    else:  # sdpa: [1, 1, rows, dims] so that CPU can pick its fused kernel
        out = F.scaled_dot_product_attention(q[None, None], V[None, None], E[None, None], scale=1.0)[0, 0]
    return out.reshape(*W.shape[:-1], E.shape[-1])


def logsumexp_scores(
    h: torch.Tensor, E: torch.Tensor, chunk_size: int | None = None, method: ReadoutMethod = "auto"
) -> torch.Tensor:
    """``log sum_i exp(h . e_i)``: features ``h [B, H]``, item embeddings ``E [I, H]`` -> ``[B]``.

    The normaliser of a learner's full softmax; chunked, its memory does not grow with ``B × I``.
    """
    _check_keys_values(h, E, None)
    method = _resolve(method, chunk_size, h.shape[0], E.shape[0])
    if method == "sdpa":
        raise ValueError("logsumexp_scores has no SDPA path; use 'dense' or 'chunked'")
    if method == "dense":
        return torch.logsumexp(h @ E.T, dim=-1)
    _, lse = _ChunkedSoftmaxAttention.apply(h, E, None, chunk_size or DEFAULT_CHUNK_SIZE)
    return lse


def soft_target_logit(
    h: torch.Tensor,
    W_target: torch.Tensor,
    V: torch.Tensor,
    E: torch.Tensor,
    chunk_size: int | None = None,
    method: ReadoutMethod = "auto",
) -> torch.Tensor:
    """``sum_i p_i z_i`` with ``p = softmax(W_target V^T)`` and learner logits ``z = h E^T`` -> ``[B]``.

    Computed as ``h . (p @ E)`` (DESIGN §3) so neither ``p`` nor ``z`` is materialised.
    """
    if h.shape[:-1] != W_target.shape[:-1]:
        raise ValueError(f"features {tuple(h.shape)} and targets {tuple(W_target.shape)} disagree on batch")
    return (h * soft_readout(W_target, V, E, chunk_size, method)).sum(-1)


def soft_cross_entropy(
    h: torch.Tensor,
    W_target: torch.Tensor,
    V: torch.Tensor,
    E: torch.Tensor,
    chunk_size: int | None = None,
    method: ReadoutMethod = "auto",
) -> torch.Tensor:
    """``-sum_i p_i log softmax(h E^T)_i`` per row (``[B]``), ``p = softmax(W_target V^T)``.

    Equal to ``logsumexp(h E^T) - sum_i p_i z_i`` because ``sum_i p_i = 1``; the learner's loss on a soft
    (synthetic) target. ``method="sdpa"`` applies to the target term only.
    """
    lse_method: ReadoutMethod = "auto" if method == "sdpa" else method
    return logsumexp_scores(h, E, chunk_size, lse_method) - soft_target_logit(h, W_target, V, E, chunk_size, method)


# -- naive references (tests and benchmarks only: they materialise the item axis) --------------------
def naive_summary_probabilities(
    G: torch.Tensor, U: torch.Tensor, T: torch.Tensor, V: torch.Tensor
) -> torch.Tensor:
    """The summary tensor ``S [n, L, I]`` exactly as DESIGN §3 writes it (one four-factor einsum)."""
    return torch.einsum("jkl,aj,bk,cl->abc", G, U, T, V).softmax(dim=-1)


def naive_soft_readout(W: torch.Tensor, V: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """``softmax(W V^T) @ E`` with the probabilities materialised."""
    return torch.softmax(torch.einsum("...d,id->...i", W, V), dim=-1) @ E


def naive_logsumexp_scores(h: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """``logsumexp(h E^T)`` with the scores materialised."""
    return torch.logsumexp(h @ E.T, dim=-1)


def naive_soft_target_logit(h: torch.Tensor, W_target: torch.Tensor, V: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """``sum_i p_i z_i`` with ``p`` and ``z`` materialised."""
    return (torch.softmax(W_target @ V.T, dim=-1) * (h @ E.T)).sum(-1)


def naive_soft_cross_entropy_probs(h: torch.Tensor, probs: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """``-sum_i p_i log softmax(h E^T)_i`` for explicit target probabilities ``probs [B, I]``."""
    return -(probs * torch.log_softmax(h @ E.T, dim=-1)).sum(-1)


def naive_soft_cross_entropy(h: torch.Tensor, W_target: torch.Tensor, V: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy with the target distribution and the learner's log-softmax materialised."""
    return naive_soft_cross_entropy_probs(h, torch.softmax(W_target @ V.T, dim=-1), E)


# -- internals --------------------------------------------------------------------------------------
def _check_keys_values(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> None:
    if k.dim() != 2 or q.dim() < 1 or q.shape[-1] != k.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and keys {tuple(k.shape)}: expected [..., d] and [I, d]")
    if k.shape[0] == 0:
        raise ValueError("the item axis is empty")
    if v is not None and (v.dim() != 2 or v.shape[0] != k.shape[0]):
        raise ValueError(f"keys {tuple(k.shape)} and values {tuple(v.shape)}: expected [I, d] and [I, H]")


def _resolve(method: str, chunk_size: int | None, n_queries: int, n_items: int) -> str:
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if method == "auto":
        big = n_queries * n_items > DENSE_MAX_ELEMENTS
        return "chunked" if chunk_size is not None or big else "dense"
    if method not in ("dense", "chunked", "sdpa"):
        raise ValueError(f"unknown read-out method {method!r}; use auto, dense, chunked or sdpa")
    return method


def _online_softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax(q k^T) @ v, logsumexp(q k^T))`` in one pass over item chunks (no graph)."""
    n = q.shape[0]
    m = q.new_full((n,), float("-inf"))  # running max
    norm = q.new_zeros(n)  # running sum of exp(s - m)
    acc = q.new_zeros(n, 0 if v is None else v.shape[1])  # running sum of exp(s - m) v
    for start in range(0, k.shape[0], chunk_size):
        s = q @ k[start : start + chunk_size].T
        m_new = torch.maximum(m, s.amax(dim=1))
        rescale = torch.exp(m - m_new)
        p = torch.exp(s - m_new[:, None])
        norm = norm * rescale + p.sum(dim=1)
        if v is not None:
            acc = torch.addmm(acc * rescale[:, None], p, v[start : start + chunk_size])
        m = m_new
    return acc / norm[:, None], m + torch.log(norm)


def _chunk_vjp(
    need: tuple[bool, bool, bool],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor | None,
    lse: torch.Tensor,
    g_out: torch.Tensor | None,
    coef: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Gradient pieces of one item chunk: ``(dq part, dk chunk, dv chunk)``, only those in ``need``."""
    p = torch.exp(q @ k.T - lse[:, None])
    ds_factor = coef[:, None] if g_out is None else g_out @ v.T + coef[:, None]
    ds = p * ds_factor  # d loss / d scores of this chunk
    pieces = []
    if need[0]:
        pieces.append(ds @ k)
    if need[1]:
        pieces.append(ds.T @ q)
    if need[2]:
        pieces.append(p.T @ g_out)
    return tuple(pieces)


def _attention_vjp(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor | None,
    out: torch.Tensor,
    lse: torch.Tensor,
    g_out: torch.Tensor | None,
    g_lse: torch.Tensor | None,
    chunk_size: int,
    need: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``(out, lse)`` w.r.t. ``(q, k, v)``, chunked, built from differentiable ops.

    With ``p = softmax(q k^T)``: ``d s = p * (g_out v^T + g_lse - <g_out, out>)``, ``dq = ds k``,
    ``dk = ds^T q``, ``dv = p^T g_out``. When grad mode is on (a double-backward graph is being built) each
    chunk runs under checkpoint so the graph keeps only chunk inputs, not ``queries × chunk`` tensors.
    """
    need = (need[0], need[1], need[2] and g_out is not None)
    if not any(need):
        return None, None, None
    coef = torch.zeros_like(lse) if g_lse is None else g_lse
    if g_out is not None:
        coef = coef - (g_out * out).sum(dim=-1)
    build_graph = torch.is_grad_enabled()
    dq = None
    dk_parts: list[torch.Tensor] = []
    dv_parts: list[torch.Tensor] = []
    k_chunks = k.split(chunk_size)
    v_chunks = v.split(chunk_size) if v is not None else [None] * len(k_chunks)
    for k_c, v_c in zip(k_chunks, v_chunks):
        fn = partial(_chunk_vjp, need)
        if build_graph:
            pieces = checkpoint(fn, q, k_c, v_c, lse, g_out, coef, use_reentrant=False, preserve_rng_state=False)
        else:
            pieces = fn(q, k_c, v_c, lse, g_out, coef)
        pieces = list(pieces)
        if need[0]:
            part = pieces.pop(0)
            dq = part if dq is None else dq + part
        if need[1]:
            dk_parts.append(pieces.pop(0))
        if need[2]:
            dv_parts.append(pieces.pop(0))
    dk = torch.cat(dk_parts) if dk_parts else None
    dv = torch.cat(dv_parts) if dv_parts else None
    return dq, dk, dv


class _ChunkedSoftmaxAttention(torch.autograd.Function):
    """``(softmax(q k^T) @ v, logsumexp(q k^T))`` over item chunks; ``v`` may be ``None`` (lse only).

    Both outputs are differentiable and saved for backward, so the hand-written backward is itself
    differentiable through them (double backward re-enters this function's backward).
    """

    @staticmethod
    def forward(ctx, q, k, v, chunk_size):  # type: ignore[override]
        out, lse = _online_softmax_attention(q, k, v, chunk_size)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.chunk_size = chunk_size
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, g_out, g_lse):  # type: ignore[override]
        q, k, v, out, lse = ctx.saved_tensors
        if g_out is None and g_lse is None:
            return None, None, None, None
        if v is None:
            g_out = None
        need = tuple(bool(x) for x in ctx.needs_input_grad[:3])
        dq, dk, dv = _attention_vjp(q, k, v, out, lse, g_out, g_lse, ctx.chunk_size, need)  # type: ignore[arg-type]
        return dq, dk, dv, None
