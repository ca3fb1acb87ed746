"""GRU4Rec-specific checks: the hand-written GRU equals ``nn.GRU``, RecBole's structure and defaults."""

from __future__ import annotations

import pytest
import torch

from models_support import random_batch, tiny_model
from models_support import one_thread  # noqa: F401  (autouse fixture)
from td3rec.models import GRU4RecConfig
from td3rec.models.recurrent import GRU


def test_defaults_are_recbole_defaults():
    config = GRU4RecConfig()
    assert (config.embedding_size, config.hidden_size, config.n_layers, config.dropout) == (64, 128, 1, 0.3)
    assert config.feature_size == 64


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_explicit_gru_equals_torch_gru(bias, layers):
    torch.manual_seed(0)
    reference = torch.nn.GRU(5, 4, num_layers=layers, bias=bias, batch_first=True).double()
    ours = GRU(5, 4, num_layers=layers, bias=bias).double()
    ours.load_state_dict(reference.state_dict())  # same parameter names and shapes
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    expected, _ = reference(x)
    got = ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(got)
    (g_ref,) = torch.autograd.grad((expected * weights).sum(), x)
    (g_ours,) = torch.autograd.grad((got * weights).sum(), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", ["kernel", "loop"])
def test_explicit_gru_supports_gradgradcheck(path):
    torch.manual_seed(0)
    gru = GRU(3, 2, num_layers=2, bias=True).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    fn = gru if path == "kernel" else gru.loop_forward
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("bias", [True, False])
def test_loop_path_equals_kernel_path(bias):
    """The CUDA path (explicit loop) and the CPU path (PyTorch's kernel) compute the same GRU."""
    torch.manual_seed(1)
    gru = GRU(5, 4, num_layers=2, bias=bias).double()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(gru.loop_forward(x), gru(x), rtol=1e-12, atol=1e-12)


def test_features_match_recbole_formula_with_torch_gru():
    """dense(GRU(E[ids]))[lengths - 1], computed with torch's own GRU."""
    model = tiny_model("gru4rec")
    reference = torch.nn.GRU(8, 6, num_layers=2, bias=False, batch_first=True).double()
    reference.load_state_dict(model.gru.state_dict())
    ids, lengths = random_batch(7)
    states, _ = reference(model.item_embedding(ids))
    expected = model.dense(states[torch.arange(7), lengths - 1])
    torch.testing.assert_close(model.features(ids, lengths), expected, rtol=1e-12, atol=1e-12)


def test_gru_has_no_biases_like_recbole():
    model = tiny_model("gru4rec")
    assert not [name for name, _ in model.gru.named_parameters() if "bias" in name]
