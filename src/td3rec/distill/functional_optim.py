"""Functional, differentiable Adam and SGD over parameter dictionaries (DESIGN §4.3).

The distillation unrolls a learner's training with ``torch.func.functional_call`` and explicit parameter
dictionaries, and differentiates through the last ``window`` inner steps (``create_graph=True``). These
optimisers return *new* parameter and state dictionaries and never modify a tensor in place, so the whole
unroll stays one autograd graph. Under ``torch.no_grad()`` with detached tensors they are plain optimiser
steps (the graph-free part of RaT-BPTT).

Each step reproduces the single-tensor implementation of ``torch.optim.Adam`` / ``torch.optim.SGD``
(``foreach=False``, the CPU default) formula by formula and in the same operation order, so results agree
to rounding. Not supported: ``amsgrad``, ``maximize``, decoupled weight decay (AdamW), tensor learning rates.

The one deliberate difference is the derivative of Adam's ``sqrt(v)`` where ``v == 0`` exactly (a parameter
that never received a non-zero gradient, such as the padding row of an item embedding): ``d sqrt(v)/dv`` is
infinite there and would turn the meta-gradient into ``0 / 0 = NaN``. :func:`_safe_sqrt` returns the exact
forward value (``sqrt(0) = 0``) but takes the derivative at ``v == 0`` as 0. This loses nothing: ``v == 0``
means every gradient so far was 0, so the first moment is 0 too and the term that carries ``d sqrt(v)`` is
multiplied by it — the meta-gradient stays the exact derivative (checked against finite differences in the
tests). Forward results are bit-identical to ``torch.sqrt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from td3rec.errors import ConfigError

Params = dict[str, torch.Tensor]
Grads = dict[str, torch.Tensor | None]


# -- Adam -------------------------------------------------------------------------------------------
@dataclass
class AdamState:
    """Per-parameter step count and first and second moment estimates, keyed like the parameters."""

    step: dict[str, int] = field(default_factory=dict)
    exp_avg: dict[str, torch.Tensor] = field(default_factory=dict)
    exp_avg_sq: dict[str, torch.Tensor] = field(default_factory=dict)

    def detached(self) -> AdamState:
        """The same state cut from any autograd graph (to continue an unroll without its history)."""
        return AdamState(dict(self.step), _detach(self.exp_avg), _detach(self.exp_avg_sq))


def adam_init(params: Params) -> AdamState:
    """Fresh Adam state: step 0 and zero moments (what ``torch.optim.Adam`` creates lazily)."""
    return AdamState(
        step={name: 0 for name in params},
        exp_avg={name: torch.zeros_like(p) for name, p in params.items()},
        exp_avg_sq={name: torch.zeros_like(p) for name, p in params.items()},
    )


def adam_step(
    params: Params,
    grads: Grads,
    state: AdamState,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[Params, AdamState]:
    """One ``torch.optim.Adam`` step (L2 weight decay added to the gradient), returned as new dictionaries.

    A parameter whose gradient is ``None`` (unused) is left unchanged with its state, as torch does.
    """
    beta1, beta2 = betas
    new_params: Params = {}
    new_state = AdamState(dict(state.step), dict(state.exp_avg), dict(state.exp_avg_sq))
    for name, param in params.items():
        grad = grads.get(name)
        if grad is None:
            new_params[name] = param
            continue
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        step = state.step[name] + 1
        exp_avg = torch.lerp(state.exp_avg[name], grad, 1 - beta1)
        exp_avg_sq = state.exp_avg_sq[name].mul(beta2).addcmul(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        denom = (_safe_sqrt(exp_avg_sq) / bias_correction2**0.5).add(eps)
        new_params[name] = param.addcdiv(exp_avg, denom, value=-step_size)
        new_state.step[name] = step
        new_state.exp_avg[name] = exp_avg
        new_state.exp_avg_sq[name] = exp_avg_sq
    return new_params, new_state


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` for ``v >= 0`` whose derivative at ``v == 0`` is 0 instead of ``inf`` (see module doc)."""
    if not (torch.is_grad_enabled() and v.requires_grad):
        return v.sqrt()
    positive = v > 0
    # the inner where keeps sqrt's backward away from 0, the outer one restores the exact value 0
    return torch.where(positive, torch.where(positive, v, torch.ones_like(v)).sqrt(), torch.zeros_like(v))


# -- SGD --------------------------------------------------------------------------------------------
@dataclass
class SGDState:
    """Momentum buffers keyed like the parameters (``None`` until the first step, as in torch)."""

    momentum_buffer: dict[str, torch.Tensor | None] = field(default_factory=dict)

    def detached(self) -> SGDState:
        """The same state cut from any autograd graph."""
        return SGDState({k: None if b is None else b.detach() for k, b in self.momentum_buffer.items()})


def sgd_init(params: Params) -> SGDState:
    """Fresh SGD state (no momentum buffers yet)."""
    return SGDState({name: None for name in params})


def sgd_step(
    params: Params,
    grads: Grads,
    state: SGDState,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> tuple[Params, SGDState]:
    """One ``torch.optim.SGD`` step, returned as new dictionaries.

    As in torch, the first momentum buffer is the (decayed) gradient itself; unlike torch it is not
    detached, so the unroll stays differentiable (the forward values are the same).
    """
    _check_sgd(momentum, nesterov, dampening)
    new_params: Params = {}
    new_state = SGDState(dict(state.momentum_buffer))
    for name, param in params.items():
        grad = grads.get(name)
        if grad is None:
            new_params[name] = param
            continue
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        if momentum != 0:
            buf = state.momentum_buffer.get(name)
            buf = grad if buf is None else buf.mul(momentum).add(grad, alpha=1 - dampening)
            new_state.momentum_buffer[name] = buf
            grad = grad.add(buf, alpha=momentum) if nesterov else buf
        new_params[name] = param.add(grad, alpha=-lr)
    return new_params, new_state


def _check_sgd(momentum: float, nesterov: bool, dampening: float) -> None:
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a positive momentum and zero dampening")


# -- one interface ----------------------------------------------------------------------------------
OptimizerState = AdamState | SGDState


@runtime_checkable
class FunctionalOptimizer(Protocol):
    """What the distillation loop needs from an inner optimiser."""

    def init(self, params: Params) -> OptimizerState:
        """Fresh state for ``params``."""
        ...

    def step(self, params: Params, grads: Grads, state: OptimizerState) -> tuple[Params, OptimizerState]:
        """New parameters and state after one step on ``grads``."""
        ...


@dataclass(frozen=True)
class FunctionalAdam:
    """:func:`adam_step` with fixed hyper-parameters (``torch.optim.Adam`` defaults)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def init(self, params: Params) -> AdamState:
        return adam_init(params)

    def step(self, params: Params, grads: Grads, state: AdamState) -> tuple[Params, AdamState]:  # type: ignore[override]
        return adam_step(params, grads, state, self.lr, self.betas, self.eps, self.weight_decay)


@dataclass(frozen=True)
class FunctionalSGD:
    """:func:`sgd_step` with fixed hyper-parameters."""

    lr: float = 1e-2
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    dampening: float = 0.0

    def __post_init__(self) -> None:
        _check_sgd(self.momentum, self.nesterov, self.dampening)

    def init(self, params: Params) -> SGDState:
        return sgd_init(params)

    def step(self, params: Params, grads: Grads, state: SGDState) -> tuple[Params, SGDState]:  # type: ignore[override]
        return sgd_step(
            params, grads, state, self.lr, self.momentum, self.weight_decay, self.nesterov, self.dampening
        )


def make_functional_optimizer(name: str, lr: float, **hyper: object) -> FunctionalOptimizer:
    """``"adam"`` or ``"sgd"`` with learning rate ``lr`` and the optimiser's other keyword settings.

    So that one configuration can carry both optimisers' settings, SGD-only settings at their neutral value
    (``momentum=0``, ``dampening=0``, ``nesterov=False``) are ignored for Adam; any other value is an error.
    """
    kinds: dict[str, type] = {"adam": FunctionalAdam, "sgd": FunctionalSGD}
    kind = kinds.get(name.lower())
    if kind is None:
        raise ConfigError(f"unknown inner optimiser {name!r}; use adam or sgd")
    if kind is FunctionalAdam:
        hyper = {k: v for k, v in hyper.items() if not (k in _SGD_NEUTRAL and v == _SGD_NEUTRAL[k])}
    if "betas" in hyper:
        hyper["betas"] = tuple(hyper["betas"])  # type: ignore[arg-type]  # YAML gives lists
    try:
        return kind(lr=lr, **hyper)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"inner optimiser {name!r}: {exc}") from exc


_SGD_NEUTRAL: dict[str, object] = {"momentum": 0.0, "dampening": 0.0, "nesterov": False}


def _detach(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: t.detach() for k, t in tensors.items()}
