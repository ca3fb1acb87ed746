"""Where a distillation stands, in a form that can be checkpointed and restored exactly (``--resume``).

:class:`DistillProgress` is the bookkeeping of the outer loop (epoch, the epoch's batch order and the
position in it, best-so-far, history, counters, timings); :func:`learner_payload` /
:func:`learner_from_payload` turn the inner learner's state (parameters, functional optimiser state, inner
step counter) into plain tensors and back. Together with the summary, the outer optimiser and scheduler and
the random generator states (:mod:`td3rec.utils.rng`) they are everything a resumed run needs to continue
bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from td3rec.distill.functional_optim import AdamState, SGDState
from td3rec.distill.inner_loop import LearnerState
from td3rec.errors import DataError


@dataclass
class DistillProgress:
    """Bookkeeping of the outer loop.

    Attributes:
        epoch: the current outer epoch (1-based).
        order: the current epoch's permutation of the real examples; ``None`` before the epoch starts.
        position: outer steps (batches) of the current epoch already done.
        global_step: outer steps done in all.
        done: every epoch (or ``max_steps``) is done; only the final report is left.
        best_value / best_epoch: best validation value of ``select_metric`` so far and its epoch.
        history: one row per validation.
        skipped: outer steps skipped because the loss or meta-gradient was non-finite.
        nonfinite_streak: such steps in a row up to now.
        step_seconds / epoch_seconds: timings of the steps and epochs so far.
        epoch_elapsed: seconds already spent in the current epoch (so a resumed epoch's time adds up).
        elapsed: seconds spent in the outer loop so far, validations included (a time budget's clock).
        planned_steps: outer steps a time-budget run has planned (0 without a budget).
        validation_seconds: timings of the validations so far.
        support: the summary's current top-k supports ``[n, L, k]`` (refreshed every outer step; ``None`` for a
            dense summary or before the first step).
    """

    epoch: int = 1
    order: torch.Tensor | None = None
    position: int = 0
    global_step: int = 0
    done: bool = False
    best_value: float = float("-inf")
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    skipped: int = 0
    nonfinite_streak: int = 0
    step_seconds: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_elapsed: float = 0.0
    elapsed: float = 0.0
    planned_steps: int = 0
    validation_seconds: list[float] = field(default_factory=list)
    support: torch.Tensor | None = None
    grad_norms: dict[str, list[float]] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        """A plain dict for the checkpoint."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "DistillProgress":
        names = {f.name for f in dataclasses.fields(cls)}
        payload = {**{name: f.default_factory() for name, f in _ADDED_LATER.items()}, **payload}
        if set(payload) != names:
            raise DataError("the resume checkpoint's progress record does not match this td3rec version")
        return cls(**payload)


#: fields added after checkpoints were first written: an older resume.pt lacks them and starts them empty
_ADDED_LATER = {f.name: f for f in dataclasses.fields(DistillProgress) if f.name == "grad_norms"}


def learner_payload(state: LearnerState | None) -> dict[str, Any] | None:
    """The inner learner's state as plain CPU tensors (``None`` between epochs, where it is not needed)."""
    if state is None:
        return None
    opt = state.opt_state
    if isinstance(opt, AdamState):
        opt_payload: dict[str, Any] = {"kind": "adam", "step": dict(opt.step), "exp_avg": _cpu(opt.exp_avg),
                                       "exp_avg_sq": _cpu(opt.exp_avg_sq)}
    elif isinstance(opt, SGDState):
        opt_payload = {"kind": "sgd", "momentum_buffer": {k: None if b is None else b.detach().cpu()
                                                          for k, b in opt.momentum_buffer.items()}}
    else:  # pragma: no cover - only the two functional optimisers exist
        raise TypeError(f"cannot checkpoint inner optimiser state {type(opt).__name__}")
    return {"params": _cpu(state.params), "opt": opt_payload, "step": state.step}


def learner_from_payload(payload: dict[str, Any] | None, device: torch.device) -> LearnerState | None:
    """Inverse of :func:`learner_payload`, tensors on ``device``."""
    if payload is None:
        return None
    opt = payload["opt"]
    if opt["kind"] == "adam":
        opt_state: AdamState | SGDState = AdamState(dict(opt["step"]), _to(opt["exp_avg"], device),
                                                    _to(opt["exp_avg_sq"], device))
    else:
        opt_state = SGDState({k: None if b is None else b.to(device) for k, b in opt["momentum_buffer"].items()})
    return LearnerState(_to(payload["params"], device), opt_state, int(payload["step"]))


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in tensors.items()}


def _to(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in tensors.items()}
