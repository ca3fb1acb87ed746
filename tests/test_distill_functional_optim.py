"""Functional Adam/SGD: step-for-step equal to torch.optim, and differentiable through an unroll."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from td3rec.distill.functional_optim import (
    AdamState,
    FunctionalAdam,
    FunctionalOptimizer,
    FunctionalSGD,
    SGDState,
    adam_init,
    adam_step,
    make_functional_optimizer,
    sgd_init,
    sgd_step,
)
from td3rec.errors import ConfigError

ADAM_SETTINGS = [{}, {"weight_decay": 1e-2}, {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 5e-5}]
SGD_SETTINGS = [
    {},
    {"weight_decay": 1e-2},
    {"momentum": 0.9},
    {"momentum": 0.9, "weight_decay": 1e-2, "dampening": 0.1},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
]
CASES = [("adam", s) for s in ADAM_SETTINGS] + [("sgd", s) for s in SGD_SETTINGS]
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


class _Tiny(nn.Module):
    """Embedding (padding row 0 and never-seen rows get exactly zero gradient) + tanh + linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4, padding_idx=0)
        self.out = nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.emb(ids).sum(1)))


def _batches(steps: int = 20):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 6, (8, 3), generator=g)  # rows 6..9 never appear
        yield ids, torch.randint(0, 3, (8,), generator=g)


def _torch_optimizer(name, params, lr, settings):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, foreach=False, **settings)
    return torch.optim.SGD(params, lr=lr, foreach=False, **settings)


def _functional_step(name, params, grads, state, lr, settings):
    if name == "adam":
        return adam_step(params, grads, state, lr, **settings)
    return sgd_step(params, grads, state, lr, **settings)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_graph", [False, True])
@pytest.mark.parametrize("name,settings", CASES)
def test_matches_torch_optim_for_20_steps(name, settings, with_graph, dtype):
    torch.manual_seed(0)
    model = _Tiny().to(dtype)
    reference = copy.deepcopy(model)
    opt = _torch_optimizer(name, reference.parameters(), 0.05, settings)
    params = {k: v.detach().clone().requires_grad_(with_graph) for k, v in model.named_parameters()}
    state = adam_init(params) if name == "adam" else sgd_init(params)
    loss_fn = nn.CrossEntropyLoss()
    saw_zero_grad = False
    for ids, targets in _batches():
        opt.zero_grad()
        loss_fn(reference(ids), targets).backward()
        opt.step()
        if with_graph:  # differentiable unroll: grads keep their graph
            loss = loss_fn(functional_call(model, params, (ids,)), targets)
            grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=True)))
            params, state = _functional_step(name, params, grads, state, 0.05, settings)
        else:  # graph-free steps (before the RaT-BPTT window)
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            loss = loss_fn(functional_call(model, leaves, (ids,)), targets)
            grads = dict(zip(params, torch.autograd.grad(loss, list(leaves.values()))))
            with torch.no_grad():
                params, state = _functional_step(name, params, grads, state, 0.05, settings)
            assert not any(p.requires_grad for p in params.values())
        saw_zero_grad |= bool((grads["emb.weight"][0] == 0).all() and (grads["emb.weight"][6:] == 0).all())
        for k, p in reference.named_parameters():
            torch.testing.assert_close(params[k].detach(), p.detach(), rtol=TOL[dtype], atol=TOL[dtype])
    assert saw_zero_grad
    # rows with zero gradient moved only through weight decay, exactly as torch moves them
    if with_graph:
        assert all(torch.isfinite(p).all() for p in params.values())


def test_unused_parameter_is_left_alone():
    params = {"a": torch.ones(2), "b": torch.ones(2)}
    new, state = adam_step(params, {"a": torch.ones(2), "b": None}, adam_init(params), lr=0.1)
    assert new["b"] is params["b"] and state.step == {"a": 1, "b": 0}
    new, _ = sgd_step(params, {"a": torch.ones(2)}, sgd_init(params), lr=0.1, momentum=0.9)
    assert new["b"] is params["b"]
    torch.testing.assert_close(new["a"], torch.full((2,), 0.9))


def test_steps_do_not_modify_their_inputs():
    params = {"w": torch.randn(3)}
    grads = {"w": torch.randn(3)}
    snapshot = params["w"].clone(), grads["w"].clone()
    state = adam_init(params)
    new, new_state = adam_step(params, grads, state, lr=0.1, weight_decay=0.1)
    new, new_state = adam_step(new, grads, new_state, lr=0.1)
    torch.testing.assert_close(params["w"], snapshot[0])
    torch.testing.assert_close(grads["w"], snapshot[1])
    assert state.step["w"] == 0 and (state.exp_avg["w"] == 0).all()


# -- differentiability --------------------------------------------------------------------------------
def _unrolled_validation_loss(x_train: torch.Tensor, optimizer: FunctionalOptimizer, steps: int = 3) -> torch.Tensor:
    """Train a linear model on (x_train, y) for ``steps`` functional steps, return its validation loss."""
    g = torch.Generator().manual_seed(2)
    model = nn.Linear(3, 2).double()
    y = torch.randn(x_train.shape[0], 2, generator=g, dtype=torch.float64)
    x_val = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y_val = torch.randn(5, 2, generator=g, dtype=torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}
    for k, v in zip(params, (torch.randn(2, 3, generator=g, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))):
        params[k] = v.requires_grad_()
    state = optimizer.init(params)
    for _ in range(steps):
        loss = (functional_call(model, params, (x_train,)) - y).square().mean()
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=True)))
        params, state = optimizer.step(params, grads, state)
    return (functional_call(model, params, (x_val,)) - y_val).square().mean()


def _central_differences(fn, x: torch.Tensor, h: float) -> torch.Tensor:
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x).view(-1)
        e[i] = h
        e = e.view_as(x)
        grad.view(-1)[i] = (fn(x + e).detach() - fn(x - e).detach()) / (2 * h)
    return grad


@pytest.mark.parametrize(
    "optimizer",
    [
        FunctionalAdam(lr=0.1, eps=1e-2, weight_decay=1e-2),
        FunctionalSGD(lr=0.3, momentum=0.9, nesterov=True, weight_decay=1e-2),
        FunctionalSGD(lr=0.3, momentum=0.5, dampening=0.2),
    ],
)
def test_meta_gradient_through_unroll_matches_finite_differences(optimizer):
    """Column 2 of the data is exactly zero, so the matching weight column has zero gradient and Adam's
    second moment stays exactly 0 there: the meta-gradient must still be finite and correct."""
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x[:, 2] = 0.0
    x.requires_grad_()
    (meta,) = torch.autograd.grad(_unrolled_validation_loss(x, optimizer), x)
    assert torch.isfinite(meta).all()
    fd = _central_differences(lambda z: _unrolled_validation_loss(z, optimizer), x.detach(), 1e-6)
    torch.testing.assert_close(meta[:, :2], fd[:, :2], rtol=1e-6, atol=1e-9)
    # at the zero column Adam's step g / (|g| + eps) has a kink in |g|: central differences are biased by
    # about |g| / eps, so they are compared with a smaller step and a looser tolerance there
    fd0 = _central_differences(lambda z: _unrolled_validation_loss(z, optimizer), x.detach(), 1e-8)
    torch.testing.assert_close(meta[:, 2], fd0[:, 2], rtol=1e-4, atol=1e-7)
    assert meta[:, 2].abs().max() > 0


def test_meta_gradient_is_not_nan_when_second_moment_is_zero():
    w = torch.zeros(3, requires_grad=True)
    params = {"w": w}
    grads = {"w": w * torch.tensor([0.0, 1.0, 2.0])}  # first entry: gradient exactly zero, still in the graph
    new, _ = adam_step(params, grads, adam_init(params), lr=0.1)
    (meta,) = torch.autograd.grad(new["w"].sum(), w)
    assert torch.isfinite(meta).all()


# -- the uniform interface -----------------------------------------------------------------------------
def test_factory_builds_either_optimiser_from_a_name():
    adam = make_functional_optimizer("Adam", lr=0.005, weight_decay=5e-5, betas=[0.9, 0.98])
    sgd = make_functional_optimizer("sgd", lr=0.1, momentum=0.9)
    assert adam == FunctionalAdam(lr=0.005, betas=(0.9, 0.98), weight_decay=5e-5)
    assert sgd == FunctionalSGD(lr=0.1, momentum=0.9)
    assert isinstance(adam, FunctionalOptimizer) and isinstance(sgd, FunctionalOptimizer)
    # one config may carry SGD settings; at their neutral values Adam ignores them
    assert make_functional_optimizer("adam", lr=0.1, momentum=0.0, nesterov=False) == FunctionalAdam(lr=0.1)
    params = {"w": torch.ones(2)}
    assert isinstance(adam.init(params), AdamState) and isinstance(sgd.init(params), SGDState)


@pytest.mark.parametrize(
    "name,hyper", [("rmsprop", {}), ("adam", {"momentum": 0.9}), ("sgd", {"nesterov": True})]
)
def test_factory_rejects_unknown_settings(name, hyper):
    with pytest.raises(ConfigError):
        make_functional_optimizer(name, lr=0.1, **hyper)


def test_detached_state_leaves_the_graph():
    w = torch.ones(2, requires_grad=True)
    _, state = adam_step({"w": w}, {"w": w * 2}, adam_init({"w": w}), lr=0.1)
    assert state.exp_avg["w"].requires_grad
    assert not state.detached().exp_avg["w"].requires_grad
    _, sstate = sgd_step({"w": w}, {"w": w * 2}, sgd_init({"w": w}), lr=0.1, momentum=0.9)
    assert not sstate.detached().momentum_buffer["w"].requires_grad
