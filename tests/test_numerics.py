"""Guarded numerics (issue 6, point 3): a non-finite outer loss or meta-gradient skips the update, is counted
and reported; too many in a row stop the run (exit code 3) with the last good summary kept; a non-finite
summary is never saved."""

from __future__ import annotations

import json

import torch

import td3rec.distill.distiller as distiller_module
from td3rec.cli import main
from td3rec.models.sasrec import SASRec
from td3rec.summary.io import load_summary
from td3rec.utils.jsonl import read_jsonl
from td3rec.utils.numerics import NonFiniteGuard

from pipeline_support import DISTILL_TINY, TRAIN_TINY


class NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose meta-gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def poison_outer_loss(monkeypatch, nan_loss: set[int], nan_grad: set[int]) -> None:
    """Make the outer loss NaN on the calls in ``nan_loss`` and its gradient NaN on those in ``nan_grad``."""
    original = distiller_module.outer_loss
    calls = []

    def outer_loss(*args, **kwargs):
        calls.append(None)
        total, ce, mse = original(*args, **kwargs)
        if len(calls) in nan_loss:
            total = total * float("nan")
        elif len(calls) in nan_grad:
            total = NaNGradient.apply(total)
        return total, ce, mse

    monkeypatch.setattr(distiller_module, "outer_loss", outer_loss)


def distill(data, teacher, out, *extra):
    return main(["distill", "--dataset", str(data), "--teacher", str(teacher), "--out", str(out), *DISTILL_TINY,
                 *extra])


def test_non_finite_steps_are_skipped_counted_and_reported(toy_data, toy_teacher, tmp_path, monkeypatch, capsys):
    poison_outer_loss(monkeypatch, nan_loss={2}, nan_grad={3})
    assert distill(toy_data, toy_teacher, tmp_path / "d", "--epochs", "2") == 0
    steps = read_jsonl(tmp_path / "d" / "steps.jsonl")
    assert [s["skipped"] for s in steps] == [False, True, True, False, False, False, False, False]
    assert steps[1]["loss"] != steps[1]["loss"]  # NaN loss logged as it was
    assert steps[2]["loss"] == steps[2]["loss"] and steps[2]["grad_norm"] != steps[2]["grad_norm"]  # NaN gradient
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["skipped_steps"] == 2
    assert capsys.readouterr().err.count("non-finite loss or meta-gradient, update skipped") == 2
    tensors, _ = load_summary(tmp_path / "d" / "summary_last.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_too_many_non_finite_steps_in_a_row_stop_with_the_last_good_summary(toy_data, toy_teacher, tmp_path,
                                                                              monkeypatch, capsys):
    poison_outer_loss(monkeypatch, nan_loss=set(range(1, 100)), nan_grad=set())
    code = distill(toy_data, toy_teacher, tmp_path / "d", "--epochs", "2", "--set", "max_nonfinite_steps=3",
                   "--d1", "4", "--seed", "5")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("td3rec distill: error:")]
    assert code == 3 and len(lines) == 1 and "Traceback" not in err
    assert "non-finite" in lines[0] and "3 steps in a row" in lines[0] and "summary_last.safetensors" in lines[0]
    assert len(read_jsonl(tmp_path / "d" / "steps.jsonl")) == 3
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["skipped_steps"] == 3
    # no update was ever applied: the kept summary is the initial one (U ~ N(0, init_std^2) from the seed)
    tensors, meta = load_summary(tmp_path / "d" / "summary_last.safetensors")
    expected_u = torch.randn((6, 4), generator=torch.Generator().manual_seed(5)) * 0.02
    assert torch.equal(tensors["U"], expected_u) and meta["stopped"] == "non-finite steps"


def test_training_stops_after_non_finite_losses(toy_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(SASRec, "window_loss", lambda self, *a: torch.tensor(float("inf"), requires_grad=True))
    code = main(["train", "--dataset", str(toy_data), "--epochs", "2", "--mode", "window", "--out",
                 str(tmp_path / "t"), *TRAIN_TINY, "--set", "window_batch_size=16", "--set", "max_nonfinite_steps=4"])
    err = capsys.readouterr().err
    assert code == 3 and "training loss was non-finite" in err and "4 steps in a row" in err
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["skipped_steps"] == 4
    assert not (tmp_path / "t" / "best.pt").exists()


def test_guard_counts_streaks_and_totals():
    guard = NonFiniteGuard(limit=2)
    assert guard.check(torch.tensor(1.0), 2.0)
    assert not guard.check(torch.tensor([1.0, float("nan")]))
    assert not guard.exceeded and (guard.streak, guard.total) == (1, 1)
    assert guard.check(torch.tensor(0.5)) and guard.streak == 0
    assert not guard.check(float("inf")) and not guard.check(torch.tensor(float("-inf")))
    assert guard.exceeded and (guard.streak, guard.total) == (2, 3)
    assert not NonFiniteGuard(limit=0, streak=10**6).exceeded  # 0 = never stop


def test_non_finite_summary_is_never_written_by_the_distiller(toy_data, toy_teacher, tmp_path, monkeypatch):
    """Even if the factors themselves became non-finite, no summary file with them appears."""
    original = distiller_module.TuckerSummary.tensors

    def broken(self):
        tensors = dict(original(self))
        tensors["G"] = tensors["G"] * float("inf")
        return tensors

    monkeypatch.setattr(distiller_module.TuckerSummary, "tensors", broken)
    assert distill(toy_data, toy_teacher, tmp_path / "d", "--epochs", "1") == 0
    assert not list((tmp_path / "d").glob("summary_*"))
