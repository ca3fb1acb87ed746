"""The Tucker read-out equals the materialised formulas (values, gradients, double backward) and, chunked,
keeps memory independent of queries × items."""

from __future__ import annotations

import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from td3rec.summary import readout
from td3rec.summary.readout import (
    logsumexp_scores,
    naive_logsumexp_scores,
    naive_soft_cross_entropy,
    naive_soft_cross_entropy_probs,
    naive_soft_readout,
    naive_soft_target_logit,
    naive_summary_probabilities,
    soft_cross_entropy,
    soft_readout,
    soft_target_logit,
    tucker_core_product,
)

DT = torch.float64
N_ITEMS = 23  # prime: no chunk size below divides it

# (method, chunk_size); chunk sizes 5 and 7 leave a ragged last chunk, 64 is one chunk larger than I
PATHS = [("dense", None), ("chunked", 5), ("chunked", 7), ("chunked", 64), ("auto", 6)]
TWICE_DIFFERENTIABLE = PATHS  # every path but SDPA


def _tensors(d3: int = 4, H: int = 6, shape: tuple[int, ...] = (3, 5), seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    W = (scale * torch.randn(*shape, d3, generator=g, dtype=DT)).requires_grad_()
    V = torch.randn(N_ITEMS, d3, generator=g, dtype=DT).requires_grad_()
    E = torch.randn(N_ITEMS, H, generator=g, dtype=DT).requires_grad_()
    return W, V, E


def _assert_close(actual, expected, tol=1e-10):
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _first_and_second_order(fn, inputs):
    """Value, first-order grads, and grads of a function of the first-order grads (double backward)."""
    out = fn(*inputs)
    weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    first = torch.autograd.grad((out * weights).sum(), inputs, create_graph=True)
    meta = sum((g.sin() * (i + 1)).sum() for i, g in enumerate(first))
    second = torch.autograd.grad(meta, inputs)
    return [out.detach(), *[g.detach() for g in first], *second]


# -- Tucker core ------------------------------------------------------------------------------------
def test_core_product_reproduces_the_four_factor_formula():
    g = torch.Generator().manual_seed(1)
    G, U, T, V = (torch.randn(*s, generator=g, dtype=DT) for s in [(2, 3, 4), (5, 2), (6, 3), (N_ITEMS, 4)])
    W = tucker_core_product(G, U, T)
    assert W.shape == (5, 6, 4)
    torch.testing.assert_close(torch.softmax(W @ V.T, -1), naive_summary_probabilities(G, U, T, V))
    # one entry written out as the defining sum
    expected = sum(G[j, k, :] * U[1, j] * T[4, k] for j in range(2) for k in range(3))
    torch.testing.assert_close(W[1, 4], expected)


def test_core_product_rejects_mismatched_factors():
    with pytest.raises(ValueError):
        tucker_core_product(torch.zeros(2, 3, 4), torch.zeros(5, 3), torch.zeros(6, 3))


# -- soft read-out ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method,chunk", PATHS)
@pytest.mark.parametrize("d3,H", [(4, 6), (5, 5)])
def test_soft_readout_matches_naive_values_and_gradients(method, chunk, d3, H):
    W, V, E = _tensors(d3, H)
    out = soft_readout(W, V, E, chunk_size=chunk, method=method)
    ref = naive_soft_readout(W, V, E)
    assert out.shape == (3, 5, H)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    ct = torch.randn_like(ref)
    _assert_close(torch.autograd.grad((out * ct).sum(), (W, V, E)), torch.autograd.grad((ref * ct).sum(), (W, V, E)))


@pytest.mark.parametrize("method,chunk", TWICE_DIFFERENTIABLE)
def test_soft_readout_double_backward_matches_naive(method, chunk):
    inputs = _tensors()
    got = _first_and_second_order(lambda W, V, E: soft_readout(W, V, E, chunk, method), inputs)
    _assert_close(got, _first_and_second_order(naive_soft_readout, inputs))


def test_chunked_readout_passes_gradgradcheck():
    W, V, E = _tensors(d3=3, H=2, shape=(4,))
    fn = lambda W, V, E: soft_readout(W, V, E, chunk_size=5, method="chunked")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (W, V, E))
    assert torch.autograd.gradgradcheck(fn, (W, V, E))


@pytest.mark.parametrize("d3,H", [(4, 6), (5, 5)])
def test_sdpa_path_is_first_order_exact_and_never_silently_wrong_at_second_order(d3, H):
    """On CPU, SDPA's fused kernel (equal widths) has no double backward; the math fallback does. Either
    it raises, or its second-order result equals the naive one."""
    inputs = _tensors(d3, H)
    ref = _first_and_second_order(naive_soft_readout, inputs)
    try:
        got = _first_and_second_order(lambda W, V, E: soft_readout(W, V, E, method="sdpa"), inputs)
    except RuntimeError as exc:
        assert "not implemented" in str(exc)
        return
    _assert_close(got, ref)


@pytest.mark.parametrize("method,chunk", PATHS)
def test_readout_is_stable_for_large_logits(method, chunk):
    W, V, E = _tensors(scale=300.0)  # logits of order 1e3: exp overflows without max-subtraction
    out = soft_readout(W, V, E, chunk, method)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, naive_soft_readout(W, V, E), rtol=1e-10, atol=1e-10)


def test_chunked_readout_under_no_grad():
    W, V, E = _tensors()
    with torch.no_grad():
        out = soft_readout(W, V, E, chunk_size=4)
    assert not out.requires_grad
    torch.testing.assert_close(out, naive_soft_readout(W, V, E).detach())


def test_auto_switches_to_chunked_above_the_dense_limit(monkeypatch):
    calls = []
    original = readout._ChunkedSoftmaxAttention.apply
    monkeypatch.setattr(readout._ChunkedSoftmaxAttention, "apply", lambda *a: calls.append(1) or original(*a))
    W, V, E = _tensors()
    soft_readout(W, V, E)
    assert calls == []  # 15 queries × 23 items is far below the limit
    monkeypatch.setattr(readout, "DENSE_MAX_ELEMENTS", 15 * N_ITEMS - 1)
    out = soft_readout(W, V, E)
    assert calls == [1]
    torch.testing.assert_close(out, naive_soft_readout(W, V, E))


@pytest.mark.parametrize(
    "shapes", [((3, 4), (7, 5), (7, 2)), ((3, 4), (7, 4), (6, 2)), ((3, 4), (0, 4), (0, 2))]
)
def test_readout_rejects_inconsistent_shapes(shapes):
    W, V, E = (torch.zeros(s) for s in shapes)
    with pytest.raises(ValueError):
        soft_readout(W, V, E)


# -- logsumexp and soft cross-entropy -----------------------------------------------------------------
@pytest.mark.parametrize("method,chunk", TWICE_DIFFERENTIABLE)
def test_logsumexp_scores_matches_naive_to_second_order(method, chunk):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(6, 5, generator=g, dtype=DT).requires_grad_()
    E = torch.randn(N_ITEMS, 5, generator=g, dtype=DT).requires_grad_()
    got = _first_and_second_order(lambda h, E: logsumexp_scores(h, E, chunk, method), (h, E))
    _assert_close(got, _first_and_second_order(naive_logsumexp_scores, (h, E)))


def _ce_inputs(seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(6, 5, generator=g, dtype=DT).requires_grad_()
    W_t = torch.randn(6, 3, generator=g, dtype=DT).requires_grad_()
    V = torch.randn(N_ITEMS, 3, generator=g, dtype=DT).requires_grad_()
    E = torch.randn(N_ITEMS, 5, generator=g, dtype=DT).requires_grad_()
    return h, W_t, V, E


@pytest.mark.parametrize("method,chunk", TWICE_DIFFERENTIABLE)
def test_soft_target_logit_matches_naive(method, chunk):
    inputs = _ce_inputs()
    got = _first_and_second_order(lambda *x: soft_target_logit(*x, chunk_size=chunk, method=method), inputs)
    _assert_close(got, _first_and_second_order(naive_soft_target_logit, inputs))


@pytest.mark.parametrize("method,chunk", TWICE_DIFFERENTIABLE)
def test_soft_cross_entropy_matches_naive(method, chunk):
    inputs = _ce_inputs()
    got = _first_and_second_order(lambda *x: soft_cross_entropy(*x, chunk_size=chunk, method=method), inputs)
    _assert_close(got, _first_and_second_order(naive_soft_cross_entropy, inputs))


def test_soft_cross_entropy_sdpa_target_is_first_order_exact():
    h, W_t, V, E = _ce_inputs()
    got = soft_cross_entropy(h, W_t, V, E, method="sdpa")
    ref = naive_soft_cross_entropy(h, W_t, V, E)
    torch.testing.assert_close(got, ref)
    _assert_close(torch.autograd.grad(got.sum(), (h, W_t, V, E)), torch.autograd.grad(ref.sum(), (h, W_t, V, E)))


def test_soft_cross_entropy_is_the_entropy_form_of_explicit_probabilities():
    h, W_t, V, E = _ce_inputs()
    probs = torch.softmax(W_t @ V.T, -1)
    # -sum p log softmax(z), written independently of the read-out identity
    torch.testing.assert_close(soft_cross_entropy(h, W_t, V, E, chunk_size=4), naive_soft_cross_entropy_probs(h, probs, E))


@pytest.mark.parametrize("chunk", [None, 5])
def test_soft_cross_entropy_with_one_hot_target_is_hard_cross_entropy(chunk):
    g = torch.Generator().manual_seed(5)
    V = torch.nn.functional.normalize(torch.randn(N_ITEMS, 8, generator=g, dtype=DT), dim=1)
    targets = torch.tensor([0, 7, 22, 11])
    W_t = 2000.0 * V[targets]  # logit gap >= 2000 (1 - max cosine): softmax is one-hot to machine precision
    assert (torch.softmax(W_t @ V.T, -1).max(-1).values > 1 - 1e-12).all()
    h = torch.randn(4, 6, generator=g, dtype=DT)
    E = torch.randn(N_ITEMS, 6, generator=g, dtype=DT)
    hard = F.cross_entropy(h @ E.T, targets, reduction="none")
    torch.testing.assert_close(soft_cross_entropy(h, W_t, V, E, chunk_size=chunk), hard, rtol=1e-10, atol=1e-10)


# -- memory ---------------------------------------------------------------------------------------------
class _LiveTensorBytes(TorchDispatchMode):
    """Tracks bytes of tensor storages created by aten ops while active (alive until their tensor dies),
    and the largest single op output. Storages of ``inputs`` are not counted."""

    def __init__(self, *inputs: torch.Tensor) -> None:
        super().__init__()
        self.sizes = {t.untyped_storage().data_ptr(): 0 for t in inputs}
        self.live = self.peak = self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            self.largest = max(self.largest, t.numel())
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self.sizes or storage.nbytes() == 0:
                continue
            self.sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, key)
        return out

    def _release(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)


def _meta_step_memory(method: str, n_items: int, n_queries: int = 64, d: int = 8):
    """Forward, first-order grad with graph, and double backward w.r.t. the queries (float32)."""
    g = torch.Generator().manual_seed(6)
    W = torch.randn(n_queries, d, generator=g).requires_grad_()
    V, E = torch.randn(n_items, d, generator=g), torch.randn(n_items, d, generator=g)
    with _LiveTensorBytes(W, V, E) as tracker:
        out = soft_readout(W, V, E, chunk_size=2048 if method == "chunked" else None, method=method)
        (gW,) = torch.autograd.grad(out.square().sum(), W, create_graph=True)
        torch.autograd.grad(gW.square().sum(), W)
    return tracker


def test_memory_tracker_sees_the_dense_materialisation():
    tracker = _meta_step_memory("dense", n_items=5000)
    assert tracker.largest >= 64 * 5000
    assert tracker.peak >= 64 * 5000 * 4


@pytest.mark.slow
def test_chunked_memory_does_not_grow_with_the_catalogue():
    small = _meta_step_memory("chunked", n_items=5_000)
    large = _meta_step_memory("chunked", n_items=100_000)
    scores_bytes = 64 * 100_000 * 4
    assert large.largest <= 64 * 2048  # no op ever outputs more than one chunk of scores
    assert large.peak < scores_bytes / 5
    assert large.peak <= 1.25 * small.peak
