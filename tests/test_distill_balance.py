"""Meta-gradient balancing across architectures (``balance_gradients``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline_support import assert_same_summaries, without_timings
from test_distill_multiarch import _multi_args
from test_resume import kill_after_checkpoints
from td3rec.cli import main
from td3rec.distill.balance import balance_meta_gradient, balance_scale
from td3rec.distill.progress import DistillProgress
from td3rec.summary.io import load_summary
from td3rec.utils.jsonl import read_jsonl


def _naive_scale(previous: list[float], norm: float) -> float:
    reference = float(np.median(previous)) if previous else norm
    return 1.0 / max(norm, reference)


def test_balance_scales_by_the_larger_of_the_norm_and_the_recent_median():
    generator = torch.Generator().manual_seed(0)
    norms: dict[str, list[float]] = {}
    seen: dict[str, list[float]] = {"a": [], "b": []}
    sizes = {"a": 0.4, "b": 5.0}
    for step in range(40):
        key = "ab"[step % 2]
        size = sizes[key] * (1000.0 if step in (11, 20) else 1.0)  # spikes
        params = [torch.zeros(3, 4, dtype=torch.float64, requires_grad=True),
                  torch.zeros(5, dtype=torch.float64, requires_grad=True)]
        raw = [torch.randn(p.shape, generator=generator, dtype=torch.float64) * size / 4 for p in params]
        for p, g in zip(params, raw):
            p.grad = g.clone()
        norm, scale = balance_meta_gradient(params, norms, key, window=5)
        expected_norm = math.sqrt(sum(float((g ** 2).sum()) for g in raw))
        assert norm == pytest.approx(expected_norm, rel=1e-12)
        assert scale == pytest.approx(_naive_scale(seen[key][-5:], expected_norm), rel=1e-12)
        for p, g in zip(params, raw):
            torch.testing.assert_close(p.grad, g * scale, rtol=1e-12, atol=0)
        # the balanced norm: at most 1, exactly 1 for a spike
        balanced = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
        assert balanced <= 1 + 1e-12
        if step in (11, 20):
            assert balanced == pytest.approx(1.0)
        seen[key].append(expected_norm)
        assert norms[key] == pytest.approx(seen[key][-5:])  # only the window is kept


def test_balance_leaves_a_non_finite_gradient_alone_and_unrecorded():
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([float("nan"), 1.0])
    norms = {"a": [2.0]}
    norm, scale = balance_meta_gradient([p], norms, "a", window=5)
    assert math.isnan(norm) and scale == 1.0 and norms == {"a": [2.0]}
    assert balance_scale([], 0.0) == 1.0  # a zero gradient stays zero


def test_old_progress_records_resume_with_empty_norms():
    payload = DistillProgress(global_step=3).to_payload()
    del payload["grad_norms"]  # a resume.pt written before the field existed
    assert DistillProgress.from_payload(payload).grad_norms == {}


def test_balanced_run_records_its_scales_and_resumes_bit_for_bit(toy_data, toy_teacher, toy_gru_teacher, tmp_path):
    balance = ("--set", "balance_gradients=true", "--set", "balance_window=2")
    reference = tmp_path / "reference"
    assert main(_multi_args(toy_data, [toy_teacher, toy_gru_teacher], reference, *balance)) == 0
    steps = read_jsonl(reference / "steps.jsonl")
    # each step's scale, recomputed from the raw norms of the earlier steps of its architecture
    by_model: dict[str, list[float]] = {}
    for step in steps:
        previous = by_model.setdefault(step["models"][0], [])
        assert step["grad_scale"] == pytest.approx(_naive_scale(previous[-2:], step["grad_norm"]), rel=1e-6)
        previous.append(step["grad_norm"])
    assert len({s["grad_scale"] for s in steps}) > 1

    plain = tmp_path / "plain"
    assert main(_multi_args(toy_data, [toy_teacher, toy_gru_teacher], plain)) == 0
    assert all("grad_scale" not in s for s in read_jsonl(plain / "steps.jsonl"))
    assert [s["grad_norm"] for s in read_jsonl(plain / "steps.jsonl")][0] == pytest.approx(steps[0]["grad_norm"])
    assert not torch.equal(load_summary(plain / "summary_last.safetensors")[0]["U"],
                           load_summary(reference / "summary_last.safetensors")[0]["U"])

    out = tmp_path / "killed"  # the norms' history is part of the checkpoint
    kill_after_checkpoints(_multi_args(toy_data, [toy_teacher, toy_gru_teacher], out, *balance), 3, tmp_path / "frozen")
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert_same_summaries(reference, out)
    assert without_timings(read_jsonl(out / "steps.jsonl")) == without_timings(steps)
