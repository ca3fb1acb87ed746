"""Farzi Data: its read-outs equal the materialised formulas (values and gradients) on every path the
distiller and the evaluation use, and ``td3rec distill --method farzi`` runs end to end on generated data and
its summary evaluates, exports and inspects."""

from __future__ import annotations

import json

import pytest
import torch

from td3rec.cli import main
from td3rec.distill.config import DistillConfig
from td3rec.distill.summaries import build_summary
from td3rec.evaluation.sources import DecodedSoftSequences, SoftSequences
from td3rec.summary.distributions import SummaryDistributions
from td3rec.summary.factors import load_summary_factors
from td3rec.summary.farzi import FarziConfig, FarziSummary
from td3rec.summary.io import load_summary
from td3rec.summary.readout import soft_readout

from pipeline_support import DISTILL_TINY

DT = torch.float64
N_ITEMS, D3, H = 23, 5, 6


def _summary(decoder: str, chunk_size: int | None = None, seed: int = 0) -> tuple[FarziSummary, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(N_ITEMS, D3, generator=g, dtype=DT)
    summary = FarziSummary(FarziConfig(n_sequences=3, seq_len=4, latent_dim=2, decoder=decoder, init_std=1.0,
                                       chunk_size=chunk_size), V, generator=g)
    E = torch.randn(N_ITEMS, H, generator=g, dtype=DT).requires_grad_()
    return summary, E


def _naive_probabilities(summary: FarziSummary) -> torch.Tensor:
    """softmax over items of latent · decoder, every logit written out (decoder = D · V^T when factorised)."""
    if summary.factorised:
        logits = torch.einsum("abd,dk,ik->abi", summary.latent, summary.D, summary.V)
    else:
        logits = torch.einsum("abd,di->abi", summary.latent, summary.decoder)
    return torch.softmax(logits, dim=-1)


def _values_and_grads(fn, params):
    out = fn()
    weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), params)
    return [out.detach(), *grads]


def _assert_all_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("decoder, chunk_size", [("factorised", None), ("factorised", 7), ("full", None),
                                                 ("full", 7)])
def test_readouts_equal_the_materialised_formula(decoder, chunk_size):
    summary, E = _summary(decoder, chunk_size)
    params = [p for p in summary.parameters()] + [E]
    expected = _values_and_grads(lambda: _naive_probabilities(summary) @ E, params)
    # the summary's own read-out (factorised: chunkable attention read-out; full: plain materialised)
    _assert_all_close(_values_and_grads(lambda: summary.readout(E), params), expected)
    # what the distiller's inner loop computes: soft_readout(core_product(), item_factor, E), dense and chunked
    for method in ("dense", "chunked"):
        actual = _values_and_grads(
            lambda: soft_readout(summary.core_product(), summary.item_factor, E, chunk_size or 5, method), params)
        _assert_all_close(actual, expected)
    # the evaluation source of the detached summary gives the same learner inputs
    source = summary.source(chunk_size)
    assert isinstance(source, SoftSequences if decoder == "factorised" else DecodedSoftSequences)

    class Learner:
        def item_vectors(self):
            return E.detach()

    rows = torch.tensor([2, 0])
    torch.testing.assert_close(source.vectors(Learner(), rows), expected[0][rows], rtol=1e-10, atol=1e-10)


def test_shapes_sizes_and_file_tensors():
    factorised, _ = _summary("factorised")
    full, _ = _summary("full")
    assert factorised.core_product().shape == (3, 4, D3) and factorised.item_factor.shape == (N_ITEMS, D3)
    assert full.core_product().shape == (3, 4, 2) and full.item_factor.shape == (N_ITEMS, 2)
    assert factorised.num_parameters() == 3 * 4 * 2 + 2 * D3
    assert factorised.num_parameters(include_item_factor=True) == 3 * 4 * 2 + 2 * D3 + N_ITEMS * D3
    assert full.num_parameters() == 3 * 4 * 2 + 2 * N_ITEMS
    assert set(factorised.tensors()) == {"latent", "D", "V"} and set(full.tensors()) == {"latent", "decoder", "V"}
    assert {n for n, _ in factorised.named_parameters()} == {"latent", "D"}  # V is fixed
    assert {n for n, _ in full.named_parameters()} == {"latent", "decoder"}
    learned = FarziSummary(FarziConfig(n_sequences=3, seq_len=4, latent_dim=2, learn_item_factor=True),
                           torch.randn(N_ITEMS, D3))
    assert {n for n, _ in learned.named_parameters()} == {"latent", "D", "V"}
    with pytest.raises(ValueError, match="factorised decoder only"):
        FarziConfig(decoder="full", learn_item_factor=True)


def test_distill_config_selects_the_method():
    V = torch.randn(N_ITEMS, D3)
    assert type(build_summary(DistillConfig(n_sequences=4, seq_len=3), V)).__name__ == "TuckerSummary"
    farzi = build_summary(DistillConfig(method="farzi", n_sequences=4, seq_len=3, farzi_latent_dim=3,
                                        farzi_decoder="full"), V)
    assert isinstance(farzi, FarziSummary) and farzi.decoder.shape == (3, N_ITEMS)
    from td3rec.errors import ConfigError

    for bad, message in [({"method": "tucker"}, "method must be one of"),
                         ({"farzi_decoder": "dense"}, "farzi_decoder must be one of"),
                         ({"method": "farzi", "farzi_decoder": "full", "learn_item_factor": True}, "full decoder")]:
        with pytest.raises(ConfigError, match=message):
            DistillConfig(**bad).validate()


@pytest.mark.parametrize("decoder", ["factorised", "full"])
def test_farzi_distillation_end_to_end(toy_data, toy_teacher, tmp_path, decoder):
    out = tmp_path / "farzi"
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--epochs", "1",
                 "--out", str(out), *DISTILL_TINY, "--method", "farzi", "--set", f"farzi_decoder={decoder}",
                 "--set", "farzi_latent_dim=3"]) == 0
    path = out / "summary_best.safetensors"
    tensors, meta = load_summary(path)
    assert meta["method"] == "farzi" and meta["farzi_decoder"] == decoder and meta["config"]["method"] == "farzi"
    assert tensors["latent"].shape == (6, 8, 3)
    n_items = tensors["V"].shape[0]
    decoder_shape = (3, tensors["V"].shape[1]) if decoder == "factorised" else (3, n_items)
    assert tensors["D" if decoder == "factorised" else "decoder"].shape == decoder_shape
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert metrics["summary_parameters"] == 6 * 8 * 3 + 3 * decoder_shape[1]
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert steps and all(s["grad_norm"] > 0 for s in steps)  # the meta-gradient reaches the Farzi parameters

    # the file reads back as the same distributions, through the evaluation source and the export/inspect path
    summary = FarziSummary(FarziConfig(n_sequences=6, seq_len=8, latent_dim=3, decoder=decoder), tensors["V"])
    summary.load_state_dict(tensors, strict=True)
    expected = summary.probabilities().double()
    factors = load_summary_factors(path)
    torch.testing.assert_close(torch.softmax(factors.queries.double() @ factors.keys.double().T, -1), expected)
    dist = SummaryDistributions.from_file(path)
    torch.testing.assert_close(torch.cat([b.probs for b in dist.blocks(sequences=[0])]), expected[0])

    results = tmp_path / "eval.json"
    assert main(["evaluate", "--dataset", str(toy_data), "--k-core", "0", "--summary", str(path), "--teacher",
                 str(toy_teacher), "--seeds", "1", "--steps", "5", "--set", "eval.protocols=[full]",
                 "--json", str(results)]) == 0
    rows = json.loads(results.read_text())["rows"]
    assert {r["init"] for r in rows} == {"reference", "shared-item-factor", "scratch"}
    assert all(0 <= r["mean"]["full"]["NDCG@10"] <= 1 for r in rows)
    assert main(["export", str(path), "--out", str(tmp_path / "s.txt"), "--format", "txt"]) == 0
    assert len((tmp_path / "s.txt").read_text().splitlines()) == 6
