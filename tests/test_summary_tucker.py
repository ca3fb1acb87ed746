"""TuckerSummary: distributions, read-out, fixed item factor, size and initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from td3rec.summary.readout import naive_summary_probabilities
from td3rec.summary.tucker import TuckerConfig, TuckerSummary

DT = torch.float64
N_ITEMS, D3 = 29, 6


def _summary(**overrides) -> TuckerSummary:
    config = TuckerConfig(**{"n_sequences": 5, "seq_len": 7, "d1": 3, "d2": 4, **overrides})
    V = torch.randn(N_ITEMS, D3, generator=torch.Generator().manual_seed(0), dtype=DT)
    summary = TuckerSummary(config, V, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # spread the logits so the distributions are far from uniform
        for p in (summary.U, summary.T, summary.G):
            p.mul_(1.0 / p.std())
    return summary


def test_probabilities_are_distributions_given_by_the_tucker_formula():
    s = _summary()
    probs = s.probabilities()
    assert probs.shape == (5, 7, N_ITEMS)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, 7, dtype=DT))
    assert probs.max() > 0.2  # not the uniform 1/29: the check below is informative
    torch.testing.assert_close(probs, naive_summary_probabilities(s.G, s.U, s.T, s.V))


def test_probabilities_select_rows_and_positions():
    s = _summary()
    full = s.probabilities()
    rows, positions = [4, 0], torch.tensor([6, 2, 3])
    torch.testing.assert_close(s.probabilities(rows, positions), full[rows][:, positions])


@pytest.mark.parametrize("chunk_size", [None, 4])
@pytest.mark.parametrize("rows", [None, [3, 1, 1]])
def test_readout_equals_probabilities_times_embeddings(chunk_size, rows):
    s = _summary(chunk_size=chunk_size)
    E = torch.randn(N_ITEMS, 10, dtype=DT)
    out = s.readout(E, rows)
    expected = s.probabilities(rows) @ E
    assert out.shape == (5 if rows is None else 3, 7, 10)
    torch.testing.assert_close(out, expected)
    params = (s.U, s.T, s.G)
    _close(torch.autograd.grad(out.square().sum(), params), torch.autograd.grad(expected.square().sum(), params))


def test_readout_rejects_an_embedding_of_another_catalogue():
    with pytest.raises(ValueError):
        _summary().readout(torch.zeros(N_ITEMS + 1, 4, dtype=DT))


def test_item_factor_is_a_fixed_copied_buffer_by_default():
    V = torch.randn(N_ITEMS, D3, dtype=DT)
    s = TuckerSummary(TuckerConfig(n_sequences=5, seq_len=7, d1=3, d2=4), V)
    assert [name for name, _ in s.named_parameters()] == ["U", "T", "G"]
    assert "V" in s.state_dict() and s.item_factor is s.V
    V_before = s.V.clone()
    opt = torch.optim.Adam(s.parameters(), lr=0.1)
    s.readout(torch.randn(N_ITEMS, 3, dtype=DT)).square().sum().backward()
    opt.step()
    torch.testing.assert_close(s.V, V_before)
    V.add_(1.0)  # the teacher's embedding changing later must not move the summary
    torch.testing.assert_close(s.V, V_before)


def test_learned_item_factor_is_a_parameter_with_gradient():
    s = _summary(learn_item_factor=True)
    assert {name for name, _ in s.named_parameters()} == {"U", "T", "G", "V"}
    s.readout(torch.randn(N_ITEMS, 3, dtype=DT)).square().sum().backward()
    assert s.V.grad is not None and s.V.grad.abs().sum() > 0


@pytest.mark.parametrize("learn", [False, True])
def test_num_parameters(learn):
    s = _summary(learn_item_factor=learn)
    core = 5 * 3 + 7 * 4 + 3 * 4 * D3
    assert s.num_parameters() == core
    assert s.num_parameters(include_item_factor=True) == core + N_ITEMS * D3
    assert sum(p.numel() for p in s.parameters()) == (core + N_ITEMS * D3 if learn else core)


def test_default_config_and_documented_initialisation():
    config = TuckerConfig()
    assert (config.n_sequences, config.seq_len, config.d1, config.d2) == (30, 50, 8, 8)
    assert config.learn_item_factor is False and config.chunk_size is None
    V = torch.randn(100, 32, dtype=DT)
    s = TuckerSummary(TuckerConfig(n_sequences=200, seq_len=200, d1=16, d2=16), V,
                      generator=torch.Generator().manual_seed(0))
    assert s.d3 == 32 and s.n_items == 100
    assert s.U.dtype == DT
    assert abs(s.U.std().item() / 0.02 - 1) < 0.05
    assert abs(s.T.std().item() / 0.02 - 1) < 0.05
    assert abs(s.G.std().item() / math.sqrt(2 / (16 * 32)) - 1) < 0.05


def test_initialisation_is_reproducible_with_a_generator():
    V = torch.randn(N_ITEMS, D3)
    a = TuckerSummary(TuckerConfig(), V, generator=torch.Generator().manual_seed(7))
    b = TuckerSummary(TuckerConfig(), V, generator=torch.Generator().manual_seed(7))
    for name in ("U", "T", "G"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("bad", [{"n_sequences": 0}, {"d1": 0}, {"init_std": -1.0}, {"chunk_size": 0}])
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        TuckerConfig(**bad)


def _close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", ["td3", "farzi"])
def test_item_factor_scale_keeps_the_initial_distributions(method):
    """``item_factor_scale`` c: the summary's V is c times the teacher's and its distributions at the start are
    the unscaled summary's (the factor before V divided by c)."""
    from td3rec.distill.config import DistillConfig
    from td3rec.distill.summaries import build_summary

    V = torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = build_summary(DistillConfig(method=method, n_sequences=3, seq_len=4), V, torch.Generator().manual_seed(1))
    scaled = build_summary(DistillConfig(method=method, n_sequences=3, seq_len=4, item_factor_scale=8.0), V,
                           torch.Generator().manual_seed(1))
    torch.testing.assert_close(scaled.shared_item_factor, 8.0 * V)
    torch.testing.assert_close(scaled.probabilities(), plain.probabilities(), rtol=1e-12, atol=1e-15)
    assert not torch.allclose(scaled.core_product(), plain.core_product())
