"""The differentiable inner loop and RaT-BPTT: meta-gradients against finite differences, the gradient path
through the window only, and the unroll-length draw."""

from __future__ import annotations

import pytest
import torch

from td3rec.data.sequences import Examples
from td3rec.distill.config import InnerConfig
from td3rec.distill.distiller import outer_loss
from td3rec.distill.inner_loop import InnerLoop, draw_unroll_length
from td3rec.models import build_model
from td3rec.summary.readout import tucker_core_product

N_ITEMS, MAX_LEN, HIDDEN = 7, 5, 4
N_SEQ, SEQ_LEN = 4, 5


def tiny_learner() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("sasrec", N_ITEMS, MAX_LEN, hidden_size=HIDDEN, inner_size=6, hidden_dropout=0.0,
                        attn_dropout=0.0).double()
    return model.eval()  # no dropout: the unroll is a deterministic function of the summary


def factors(seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "U": torch.randn(N_SEQ, 3, generator=gen, dtype=torch.float64),
        "T": torch.randn(SEQ_LEN, 3, generator=gen, dtype=torch.float64),
        "G": torch.randn(3, 3, HIDDEN, generator=gen, dtype=torch.float64),
        "V": torch.randn(N_ITEMS, HIDDEN, generator=gen, dtype=torch.float64),
    }


def real_batch() -> tuple[Examples, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(1, N_ITEMS + 1, (6, MAX_LEN), generator=gen)
    lengths = torch.tensor([1, 2, 3, 4, 5, 5])
    ids = ids * (torch.arange(MAX_LEN) < lengths[:, None])
    targets = torch.randint(1, N_ITEMS + 1, (6,), generator=gen)
    teacher = torch.randn(6, HIDDEN, generator=gen, dtype=torch.float64)
    return Examples(ids, lengths, targets, torch.arange(6)), teacher


def meta_loss(model, inner: InnerLoop, f: dict, n_steps: int, window: int, seed: int = 3) -> torch.Tensor:
    """Outer loss after an unroll from the model's own parameters (fixed cut positions through ``seed``)."""
    W = tucker_core_product(f["G"], f["U"], f["T"])
    state = inner.start(dict(model.named_parameters()))
    state = inner.unroll(state, W, f["V"], n_steps, window, torch.Generator().manual_seed(seed))
    batch, teacher = real_batch()
    total, _, _ = outer_loss(model, state.params, batch, teacher, feature_weight=0.7, chunk_size=None)
    return total


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_meta_gradient_matches_finite_differences(optimizer):
    """Full back-propagation through 3 inner steps (window = all steps) equals central differences."""
    model = tiny_learner()
    inner = InnerLoop(model, InnerConfig(optimizer=optimizer, lr=0.05, batch_size=2, momentum=0.0), N_SEQ)
    f = {k: v.clone().requires_grad_(k != "V") for k, v in factors().items()}
    assert_matches_finite_differences(lambda factors_: meta_loss(model, inner, factors_, 3, 3), f)


def assert_matches_finite_differences(loss_of, f: dict) -> None:
    """The meta-gradient of ``loss_of(factors)`` w.r.t. U, T, G equals central differences at 3 random entries
    of each (fixed seed)."""
    grads = torch.autograd.grad(loss_of(f), [f["U"], f["T"], f["G"]])
    assert all(g.abs().sum() > 0 for g in grads)
    eps = 1e-6
    gen = torch.Generator().manual_seed(5)
    for name, grad in zip("UTG", grads):
        for _ in range(3):
            idx = tuple(int(torch.randint(0, s, (1,), generator=gen)) for s in f[name].shape)
            plus = {k: v.detach().clone() for k, v in f.items()}
            minus = {k: v.detach().clone() for k, v in f.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric = float((loss_of(plus) - loss_of(minus)).detach() / (2 * eps))
            # Adam normalises by sqrt(v): high curvature, so a relative tolerance of 1e-4 (a wrong path is off by O(1))
            assert abs(float(grad[idx]) - numeric) < 1e-4 * max(1.0, abs(numeric)), (name, idx)


def test_gradient_reaches_summary_only_through_window_steps():
    """With 4 steps and a window of 2, the meta-gradient is the derivative of the window steps alone: it
    equals finite differences in which the summary is perturbed only for the last 2 steps, and differs from
    the full derivative (perturbing all 4 steps)."""
    model = tiny_learner()
    inner = InnerLoop(model, InnerConfig(lr=0.05, batch_size=2), N_SEQ)
    f = {k: v.clone().requires_grad_(k != "V") for k, v in factors().items()}
    loss = meta_loss(model, inner, f, n_steps=4, window=2)
    (grad_u,) = torch.autograd.grad(loss, [f["U"]])

    def loss_with(window_U: torch.Tensor, pre_U: torch.Tensor) -> float:
        W_pre = tucker_core_product(f["G"].detach(), pre_U, f["T"].detach())
        W_win = tucker_core_product(f["G"].detach(), window_U, f["T"].detach())
        gen = torch.Generator().manual_seed(3)
        state = inner.start(dict(model.named_parameters()))
        state = inner.unroll(state, W_pre, f["V"], 2, 0, gen)  # the two pre-window steps
        state = inner.unroll(state, W_win, f["V"], 2, 2, gen)  # the window
        batch, teacher = real_batch()
        return float(outer_loss(model, state.params, batch, teacher, 0.7, None)[0].detach())

    U0 = f["U"].detach()
    eps = 1e-6
    window_only, everywhere = torch.zeros_like(U0), torch.zeros_like(U0)
    for idx in [(0, 0), (1, 2), (3, 1)]:
        e = torch.zeros_like(U0)
        e[idx] = eps
        window_only[idx] = (loss_with(U0 + e, U0) - loss_with(U0 - e, U0)) / (2 * eps)
        everywhere[idx] = (loss_with(U0 + e, U0 + e) - loss_with(U0 - e, U0 - e)) / (2 * eps)
        assert abs(float(grad_u[idx] - window_only[idx])) < 1e-6
    assert float((everywhere - window_only).abs().max()) > 1e-4  # the pre-window steps do matter, yet get no gradient


def test_no_window_means_no_gradient():
    model = tiny_learner()
    inner = InnerLoop(model, InnerConfig(lr=0.05, batch_size=2), N_SEQ)
    f = {k: v.clone().requires_grad_(k != "V") for k, v in factors().items()}
    loss = meta_loss(model, inner, f, n_steps=3, window=0)
    assert not loss.requires_grad or all(
        g is None for g in torch.autograd.grad(loss, [f["U"]], allow_unused=True)
    )


def test_unroll_length_is_drawn_in_range_and_covers_it():
    gen = torch.Generator().manual_seed(0)
    draws = [draw_unroll_length(12, 4, True, gen) for _ in range(2000)]
    assert min(draws) == 4 and max(draws) == 12
    assert set(draws) == set(range(4, 13))
    assert draw_unroll_length(12, 4, False, gen) == 12
    assert draw_unroll_length(5, 5, True, gen) == 5


def test_frozen_item_embedding_is_not_updated():
    model = tiny_learner()
    f = factors()
    W = tucker_core_product(f["G"], f["U"], f["T"])
    for freeze in (True, False):
        inner = InnerLoop(model, InnerConfig(lr=0.05, batch_size=2, freeze_item_embedding=freeze), N_SEQ)
        start = dict(model.named_parameters())
        state = inner.unroll(inner.start(start), W, f["V"], 3, 1, torch.Generator().manual_seed(0))
        same = torch.equal(state.params["item_embedding.weight"], start["item_embedding.weight"])
        assert same == freeze
        others_moved = [not torch.equal(state.params[k], start[k]) for k in start if k != "item_embedding.weight"]
        assert any(others_moved)


def test_inner_steps_cycle_through_the_summary_in_fixed_order():
    inner = InnerLoop(tiny_learner(), InnerConfig(batch_size=3), n_sequences=5)
    rows = [inner.rows(step).tolist() for step in range(4)]
    assert rows == [[0, 1, 2], [3, 4, 0], [1, 2, 3], [4, 0, 1]]


def test_inner_training_lowers_the_inner_loss():
    """A plain (no-graph) unroll is real training: the synthetic objective goes down."""
    model = tiny_learner()
    inner = InnerLoop(model, InnerConfig(lr=0.05, batch_size=4, augment=False), N_SEQ)
    f = factors()
    W = tucker_core_product(f["G"], f["U"], f["T"])
    state = inner.start(dict(model.named_parameters()))
    before = float(inner.loss(state.params, W[inner.rows(0)], f["V"], None))
    state = inner.unroll(state, W, f["V"], 30, 0)
    after = float(inner.loss(state.params, W[inner.rows(0)], f["V"], None))
    assert after < before - 0.05


def test_cached_distributions_give_the_same_plain_steps():
    """Plain steps read the summary's distributions once per unroll; the result equals the read-out per step."""
    model = tiny_learner()
    f = factors()
    W = tucker_core_product(f["G"], f["U"], f["T"])
    results = []
    for limit in (0, 10**9):
        inner = InnerLoop(model, InnerConfig(lr=0.05, batch_size=2), N_SEQ)
        inner.cache_limit = limit
        state = inner.unroll(inner.start(dict(model.named_parameters())), W, f["V"], 5, 1,
                             torch.Generator().manual_seed(0))
        results.append(state.params)
    for k in results[0]:
        # float64 rounding differs between the two read-outs; Adam amplifies it on near-zero gradients
        torch.testing.assert_close(results[0][k], results[1][k], rtol=1e-6, atol=1e-7)


# -- top-k supports and sampled normalisers (td3rec.summary.support) ---------------------------------------
def sparse_meta_loss(model, inner: InnerLoop, f: dict, support, n_steps: int, window: int,
                     outer_negatives=None) -> torch.Tensor:
    W = tucker_core_product(f["G"], f["U"], f["T"])
    state = inner.start(dict(model.named_parameters()))
    state = inner.unroll(state, W, f["V"], n_steps, window, torch.Generator().manual_seed(3), support)
    batch, teacher = real_batch()
    total, _, _ = outer_loss(model, state.params, batch, teacher, feature_weight=0.7, chunk_size=None,
                             negatives=outer_negatives)
    return total


@pytest.mark.parametrize("frozen", [False, True])
def test_support_of_every_item_is_todays_dense_unroll(frozen):
    """k = |I|: the sparse path (plain steps from cached support probabilities, window steps through the
    sparse read-out; with a frozen item embedding, tables gathered once per unroll) gives the dense path's
    learner and meta-gradient."""
    from td3rec.summary.support import top_k_support

    model = tiny_learner()
    inner = InnerLoop(model, InnerConfig(lr=0.05, batch_size=2, freeze_item_embedding=frozen), N_SEQ)
    f = {k: v.clone().requires_grad_(k != "V") for k, v in factors().items()}
    W = tucker_core_product(f["G"], f["U"], f["T"])
    support = top_k_support(W, f["V"], N_ITEMS)
    dense = sparse_meta_loss(model, inner, f, None, 5, 2)
    sparse = sparse_meta_loss(model, inner, f, support, 5, 2)
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(dense, [f["U"], f["T"], f["G"]]),
                    torch.autograd.grad(sparse, [f["U"], f["T"], f["G"]])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("frozen", [False, True])
def test_sparse_meta_gradient_with_sampled_normalisers_matches_finite_differences(frozen):
    """A top-3 support of 7 items, 5 sampled inner negatives and 4 sampled real-batch negatives: the
    meta-gradient through a 3-step window equals central differences (support and draws fixed)."""
    from td3rec.summary.support import top_k_support

    model = tiny_learner()
    inner = InnerLoop(model, InnerConfig(lr=0.05, batch_size=2, negatives=5, freeze_item_embedding=frozen), N_SEQ)
    f = {k: v.clone().requires_grad_(k != "V") for k, v in factors().items()}
    support = top_k_support(tucker_core_product(f["G"], f["U"], f["T"]), f["V"], 3)
    negatives = torch.tensor([0, 2, 2, 6])
    assert_matches_finite_differences(lambda factors_: sparse_meta_loss(model, inner, factors_, support, 3, 3,
                                                                         negatives), f)


def test_sampled_real_batch_normaliser_with_every_item_is_the_exact_outer_loss():
    from td3rec.summary.support import all_items

    model = tiny_learner()
    params = dict(model.named_parameters())
    batch, teacher = real_batch()
    exact = outer_loss(model, params, batch, teacher, 0.7, None)
    sampled = outer_loss(model, params, batch, teacher, 0.7, None, negatives=all_items(N_ITEMS, "cpu"))
    for a, b in zip(exact, sampled):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _anchored_loss(model, inner: InnerLoop, f: dict, start_table: torch.Tensor, anchor, n_steps: int, window: int):
    """Outer loss after an unroll whose learner starts with item embedding ``start_table`` (tied to ``anchor``)."""
    W = tucker_core_product(f["G"], f["U"], f["T"])
    params = dict(model.named_parameters())
    params["item_embedding.weight"] = start_table
    state = inner.unroll(inner.start(params), W, f["V"], n_steps, window, torch.Generator().manual_seed(3),
                         anchor=anchor)
    batch, teacher = real_batch()
    total, _, _ = outer_loss(model, state.params, batch, teacher, feature_weight=0.7, chunk_size=None)
    return total, state


@pytest.mark.parametrize("optimizer, rel", [("sgd", 1e-6), ("adam", 2e-4)])  # (Adam: see the tolerance above)
@pytest.mark.parametrize("n_steps, window", [(3, 3), (5, 2)])
def test_anchor_carries_the_gradient_at_the_window_start_and_changes_nothing_else(n_steps, window, optimizer, rel):
    """``anchor`` ties the window's first item embedding to a tensor: the learner's values are unchanged, and
    the anchor's gradient is the outer loss's gradient at that embedding (central differences of a perturbed
    window-start embedding, float64; with plain steps before the window, the first-order approximation is the
    gradient at the window start, which the perturbation of the start equals only when there are none)."""
    model = tiny_learner()
    inner = InnerLoop(model, InnerConfig(optimizer=optimizer, batch_size=2, lr=0.05), N_SEQ)
    f = factors()
    start = model.item_embedding.weight.detach().clone()
    free, state_free = _anchored_loss(model, inner, f, start, None, n_steps, window)
    anchor = torch.zeros(N_ITEMS, HIDDEN, dtype=torch.float64, requires_grad=True)
    tied, state_tied = _anchored_loss(model, inner, f, start, anchor, n_steps, window)
    assert float(tied) == float(free)
    for key in state_free.params:
        assert torch.equal(state_free.params[key].detach(), state_tied.params[key].detach())
    (grad,) = torch.autograd.grad(tied, anchor)
    if n_steps == window:  # the window starts at the learner's start: perturb the start embedding
        direction = torch.randn(N_ITEMS, HIDDEN, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        eps = 1e-6
        moved = [float(_anchored_loss(model, inner, f, start + sign * eps * torch.cat([torch.zeros(1, HIDDEN,
                 dtype=torch.float64), direction]), None, n_steps, window)[0]) for sign in (1, -1)]
        assert (moved[0] - moved[1]) / (2 * eps) == pytest.approx(float((grad * direction).sum()), rel=rel)
    else:
        assert grad.abs().sum() > 0
