"""Top-k supports and the sampled normaliser (td3rec.summary.support): exact at their dense limits, equal to
naive masked computations, twice differentiable, and the sampled normaliser unbiased for the partition sum."""

from __future__ import annotations

import math

import pytest
import torch

from td3rec.summary.readout import soft_readout
from td3rec.summary.support import (
    all_items,
    draw_negatives,
    sampled_logsumexp,
    support_probabilities,
    sparse_readout,
    top_k_support,
)

F64 = torch.float64


def data(n_items: int = 37, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(3, 4, 5, generator=gen, dtype=F64)
    V = torch.randn(n_items, 5, generator=gen, dtype=F64)
    E = torch.randn(n_items, 6, generator=gen, dtype=F64)
    return W, V, E


@pytest.mark.parametrize("k, chunk", [(1, 4), (5, 3), (5, 100), (12, 7), (36, 10)])
def test_top_k_support_is_the_top_k_of_the_full_score_matrix(k, chunk):
    W, V, _ = data()
    support = top_k_support(W, V, k, chunk_size=chunk)
    expected = (W @ V.T).topk(k, dim=-1).indices
    assert support.shape == (3, 4, k)
    assert torch.equal(support.sort(-1).values, expected.sort(-1).values)


def test_support_of_every_item_is_the_dense_readout_exactly():
    W, V, E = data()
    support = top_k_support(W, V, V.shape[0])
    assert torch.equal(support[1, 2], torch.arange(V.shape[0]))
    torch.testing.assert_close(sparse_readout(W, V, E, support), soft_readout(W, V, E, method="dense"),
                               rtol=1e-12, atol=1e-12)


def test_sparse_readout_equals_the_masked_dense_softmax():
    W, V, E = data()
    support = top_k_support(W, V, 6)
    logits = W @ V.T
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, support, True)
    naive = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1) @ E
    torch.testing.assert_close(sparse_readout(W, V, E, support), naive, rtol=1e-12, atol=1e-12)
    probs = support_probabilities(W, V[support])
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4, dtype=F64))


def test_sparse_readout_is_twice_differentiable():
    W, V, E = data(n_items=9)
    support = top_k_support(W, V, 4)
    W = W.clone().requires_grad_()
    E = E.clone().requires_grad_()
    V = V.clone().requires_grad_()
    fn = lambda w, v, e: sparse_readout(w, v, e, support)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (W, V, E))
    assert torch.autograd.gradgradcheck(fn, (W, V, E))


def test_sampled_logsumexp_with_every_item_is_exact():
    _, _, E = data()
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(8, 6, generator=gen, dtype=F64)
    positives = torch.stack([torch.randperm(E.shape[0], generator=gen)[:5] for _ in range(8)])
    exact = torch.logsumexp(h @ E.T, dim=-1)
    torch.testing.assert_close(sampled_logsumexp(h, E, positives, all_items(E.shape[0], "cpu")), exact,
                               rtol=1e-12, atol=1e-12)
    no_positives = positives[:, :0]
    torch.testing.assert_close(sampled_logsumexp(h, E, no_positives, all_items(E.shape[0], "cpu")), exact,
                               rtol=1e-12, atol=1e-12)


def test_sampled_partition_sum_is_unbiased():
    """E[exp(estimate)] = sum_i exp(h . e_i): the mean over 4,000 draws is within 4 standard errors."""
    _, _, E = data(n_items=50)
    gen = torch.Generator().manual_seed(4)
    h = torch.randn(2, 6, generator=gen, dtype=F64) * 0.5
    positives = torch.tensor([[0, 7, 9], [3, 4, 5]])
    exact = torch.logsumexp(h @ E.T, dim=-1).exp()
    draws = torch.stack([sampled_logsumexp(h, E, positives, draw_negatives(50, 10, gen, "cpu")).exp()
                         for _ in range(4000)])
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert ((mean - exact).abs() < 4 * se).all(), (mean, exact, se)
    assert (se > 0).all()


def test_sampled_logsumexp_error_shrinks_with_more_negatives():
    """Measured error bound: the mean absolute error of the log estimate falls as m grows (m = |I|/10 .. |I|)."""
    _, _, E = data(n_items=200)
    gen = torch.Generator().manual_seed(6)
    h = torch.randn(16, 6, generator=gen, dtype=F64) * 0.3
    exact = torch.logsumexp(h @ E.T, dim=-1)
    errors = []
    for m in (20, 80, 320):
        est = torch.stack([sampled_logsumexp(h, E, h.new_zeros(16, 0, dtype=torch.long),
                                             draw_negatives(200, m, gen, "cpu")) for _ in range(200)])
        errors.append(float((est - exact).abs().mean()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05


def test_distributions_of_a_summary_with_a_support_keep_k_items_per_position():
    """Export and inspection read a top-k summary as distilled: k items per position, summing to one, entropy
    at most log k, and item_log_probs agreeing with the blocks."""
    from td3rec.summary.distributions import SummaryDistributions

    W, V, _ = data()
    dist = SummaryDistributions(W, V, [str(j) for j in range(1, V.shape[0] + 1)], support_size=5)
    assert dist.uniform_entropy() == pytest.approx(math.log(5))
    for block in dist.blocks(max_elements=2 * V.shape[0]):
        probs = block.probs
        assert ((probs > 0).sum(-1) == 5).all()
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[0], dtype=F64))
        expected = (W[block.sequence, block.positions.start : block.positions.stop] @ V.T).topk(5).indices
        assert torch.equal((probs > 0).nonzero()[:, 1].view(-1, 5), expected.sort(-1).values)
        items = torch.tensor([0, 3, 11])
        torch.testing.assert_close(dist.item_log_probs(block.sequence, items)[block.positions.start :
                                                                             block.positions.stop],
                                   block.log_probs[:, items])
    dense = SummaryDistributions(W, V, [str(j) for j in range(1, V.shape[0] + 1)], support_size=V.shape[0])
    first = next(dense.blocks())
    torch.testing.assert_close(first.log_probs, torch.log_softmax(W[0, : first.log_probs.shape[0]] @ V.T, -1))


def test_evaluation_source_of_a_summary_file_applies_its_support(tmp_path):
    """A summary file whose metadata says support_size k trains evaluation learners on the top-k read-out."""
    from td3rec.models import build_model
    from td3rec.summary.factors import load_summary_factors
    from td3rec.summary.io import save_summary

    gen = torch.Generator().manual_seed(1)
    tensors = {"U": torch.randn(3, 2, generator=gen), "T": torch.randn(4, 2, generator=gen),
               "G": torch.randn(2, 2, 8, generator=gen), "V": torch.randn(20, 8, generator=gen)}
    meta = {"method": "td3", "support_size": 6, "n_items": 20}
    save_summary(tmp_path / "s.safetensors", tensors, meta)
    factors = load_summary_factors(tmp_path / "s.safetensors")
    source = factors.source()
    model = build_model("sasrec", 20, 4, hidden_size=8)
    rows = torch.tensor([0, 2])
    support = top_k_support(factors.queries, factors.keys, 6)
    expected = sparse_readout(factors.queries[rows], factors.keys, model.item_vectors(), support[rows])
    torch.testing.assert_close(source.vectors(model, rows), expected)
    dense = soft_readout(factors.queries[rows], factors.keys, model.item_vectors())
    assert not torch.allclose(source.vectors(model, rows), dense)


def test_refresh_with_one_part_is_the_exact_selection_and_sweeps_converge():
    """parts = 1 re-selects exactly; sweeping 4 parts from a stale support reaches the exact top k, never holds
    an item twice, and keeps the current support's items while they stay on top."""
    from td3rec.summary.support import refresh_support

    W, V, _ = data(n_items=101)
    stale = top_k_support(torch.randn_like(W), V, 7)
    exact = top_k_support(W, V, 7)
    assert torch.equal(refresh_support(W, V, stale, 0, 1, chunk_size=10).sort(-1).values, exact.sort(-1).values)
    support = stale
    for part in range(4):
        support = refresh_support(W, V, support, part, 4, chunk_size=9)
        assert all(len(set(row.tolist())) == 7 for row in support.reshape(-1, 7))
    assert torch.equal(support.sort(-1).values, exact.sort(-1).values)
    assert torch.equal(refresh_support(W, V, exact, 2, 4).sort(-1).values, exact.sort(-1).values)
