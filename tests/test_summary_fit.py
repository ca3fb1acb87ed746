"""Fitting a summary to real sequences (initialisation from real data): the loss against a naive float64
cross-entropy, block invariance, free positions, an exact fit where the factors have the capacity, and the
distillation's `init_from` end to end."""

from __future__ import annotations

import json

import pytest
import torch

from td3rec.cli import main
from td3rec.summary.farzi import FarziConfig, FarziSummary
from td3rec.summary.fit import fit_to_items
from td3rec.summary.tucker import TuckerConfig, TuckerSummary

from pipeline_support import DISTILL_TINY


def _tucker(n: int, L: int, items: int, d: int, seed: int = 0, dtype=torch.float64) -> TuckerSummary:
    gen = torch.Generator().manual_seed(seed)
    V = torch.randn(items, 6, generator=gen, dtype=dtype)
    return TuckerSummary(TuckerConfig(n_sequences=n, seq_len=L, d1=d, d2=d, init_std=0.5), V,
                         generator=torch.Generator().manual_seed(seed + 1))


def _targets(n: int, L: int, items: int, seed: int = 0, free: float = 0.25) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, items, (n, L), generator=gen)
    return torch.where(torch.rand(n, L, generator=gen) < free, -1, targets)


def test_first_loss_is_the_cross_entropy_at_the_fitted_positions_only():
    summary = _tucker(5, 7, 30, 3)
    targets = _targets(5, 7, 30)
    probs = summary.probabilities().detach()  # [n, L, I], float64
    mask = targets >= 0
    naive = -torch.log(probs[mask].gather(1, targets[mask][:, None])).mean()
    report = fit_to_items(summary, targets, steps=1, lr=0.0)  # lr 0: the parameters stay, the loss is measured
    assert report["first_loss"] == pytest.approx(float(naive), rel=1e-12)


def test_blocks_do_not_change_the_fit():
    targets = _targets(6, 5, 40, seed=3)
    small, whole = _tucker(6, 5, 40, 3, seed=2), _tucker(6, 5, 40, 3, seed=2)
    a = fit_to_items(small, targets, steps=15, block=5 * 40)  # one sequence per block
    b = fit_to_items(whole, targets, steps=15)
    assert a["last_loss"] == pytest.approx(b["last_loss"], rel=1e-9)
    for x, y in zip(small.parameters(), whole.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_full_capacity_reproduces_the_sequences_and_free_positions_carry_no_loss():
    n, L, items = 4, 6, 12
    targets = _targets(n, L, items, seed=5)
    summary = _tucker(n, L, items, d=max(n, L), seed=4)
    report = fit_to_items(summary, targets, steps=400, lr=0.1)
    assert report["top1"] == 1.0 and report["last_loss"] < 0.1 * report["first_loss"]
    probs = summary.probabilities().detach()
    mask = targets >= 0
    assert (probs[mask].argmax(-1) == targets[mask]).all()
    # a position left free is not pulled towards any item: its loss term does not exist
    all_free = fit_to_items(_tucker(n, L, items, 3), torch.full((n, L), -1), steps=5)
    assert all_free["steps"] == 0 and all_free["top1"] is None


def test_farzi_summaries_fit_too():
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(20, 4, generator=gen)
    summary = FarziSummary(FarziConfig(n_sequences=3, seq_len=4, latent_dim=6, decoder="full"), V, generator=gen)
    targets = _targets(3, 4, 20, free=0.0)
    report = fit_to_items(summary, targets, steps=300, lr=0.1)
    assert report["top1"] == 1.0


def test_distillation_starts_from_the_fitted_longest_users(toy_data, toy_teacher, tmp_path):
    out = tmp_path / "d"
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--out", str(out),
                 *DISTILL_TINY, "--max-steps", "1", "--set", "init_from=longest", "--set", "init_fit_steps=150",
                 "--set", "outer_lr=1e-9", "--d1", "6", "--d2", "8"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init_fit"]["steps"] == 150 and metrics["init_fit"]["top1"] > 0.9
    # after one outer step at a negligible learning rate the summary still is the longest users' sequences
    from td3rec.data import load_dataset
    from td3rec.data.preprocess import PreprocessConfig
    from td3rec.data.sequences import leave_one_out
    from td3rec.summary.io import load_summary
    from td3rec.summary.real_subset import real_subset

    split = leave_one_out(load_dataset(str(toy_data), PreprocessConfig(k_core=0)))
    subset = real_subset(split, "longest", 6, 8)
    tensors, _ = load_summary(out / "summary_last.safetensors")
    W = torch.einsum("jkl,aj,bk->abl", tensors["G"], tensors["U"], tensors["T"])
    best = (W @ tensors["V"].T).argmax(-1) + 1
    inside = torch.arange(8)[None, :] < subset.full_lengths[:, None]
    assert (best[inside] == subset.ids[inside]).float().mean() > 0.9


def test_a_real_start_needs_fit_steps():
    from td3rec.distill.config import DistillConfig
    from td3rec.errors import ConfigError

    DistillConfig(init_fit_steps=0).validate()  # (noise: nothing to fit)
    with pytest.raises(ConfigError, match="init_fit_steps must be >= 1 to fit the summary to init_from='longest'"):
        DistillConfig(init_from="longest", init_fit_steps=0).validate()
