"""SASRec-specific checks: reference defaults, the RecBole architecture, and differentiating through training."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from models_support import MAX_LEN, N_ITEMS, random_batch, tiny_model
from models_support import one_thread  # noqa: F401  (autouse fixture)
from td3rec.models import SASRecConfig, build_model


def test_defaults_are_the_td3_reference_setup():
    config = SASRecConfig()
    assert (config.n_layers, config.n_heads, config.hidden_size, config.inner_size) == (1, 1, 32, 64)
    assert (config.hidden_dropout, config.attn_dropout) == (0.2, 0.5)
    assert (config.layer_norm_eps, config.initializer_range) == (1e-12, 0.02)


def _reference_features(model, ids, lengths):
    """RecBole's SASRec forward written independently: mask from item ids, torch's attention kernel,
    per-row gather in Python."""
    enc = model.encoder
    n = ids.shape[1]
    x = model.item_embedding.weight[ids] + enc.position_embedding.weight[:n]
    x = torch.nn.functional.layer_norm(x, (x.shape[-1],), enc.input_norm.weight, enc.input_norm.bias,
                                       model.config.layer_norm_eps)
    allowed = (ids > 0)[:, None, None, :] & torch.ones(n, n, dtype=torch.bool).tril()
    heads = model.config.n_heads
    for layer in enc.layers:
        att, ffn = layer.attention, layer.feed_forward
        split = lambda t: t.view(t.shape[0], n, heads, -1).transpose(1, 2)  # noqa: E731
        ctx = torch.nn.functional.scaled_dot_product_attention(
            split(att.query(x)), split(att.key(x)), split(att.value(x)), attn_mask=allowed
        )
        x = att.layer_norm(att.dense(ctx.transpose(1, 2).reshape(x.shape)) + x)
        h = ffn.dense_in(x)
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
        x = ffn.layer_norm(ffn.dense_out(h) + x)
    return torch.stack([x[b, lengths[b] - 1] for b in range(ids.shape[0])])


def test_matches_independent_recbole_style_forward():
    model = tiny_model("sasrec")
    ids, lengths = random_batch(8)
    torch.testing.assert_close(model.features(ids, lengths), _reference_features(model, ids, lengths),
                               rtol=1e-10, atol=1e-10)


def test_positions_are_counted_from_the_left():
    model = tiny_model("sasrec")
    ids, lengths = random_batch(6)
    before = model.features(ids, lengths)
    # the last position row is used only by full-length rows (a random shift: LayerNorm removes a constant one)
    with torch.no_grad():
        model.encoder.position_embedding.weight[MAX_LEN - 1].add_(torch.randn(model.hidden_size, dtype=torch.float64))
    after = model.features(ids, lengths)
    full = lengths == MAX_LEN
    torch.testing.assert_close(after[~full], before[~full], rtol=0, atol=0)
    assert not torch.allclose(after[full], before[full])


def test_longer_inputs_than_max_len_fail_clearly():
    model = build_model("sasrec", 5, 3)
    with pytest.raises(ValueError, match="max_len=3"):
        model.features(torch.ones(2, 4, dtype=torch.long), torch.tensor([4, 2]))


def test_gradgradcheck_wrt_soft_inputs():
    model = tiny_model("sasrec", n_items=4, max_len=3, n_layers=1)
    lengths = torch.tensor([3, 2])
    probs = torch.softmax(torch.randn(2, 3, 4, dtype=torch.float64), dim=-1).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda p: model.encode(model.embed_soft(p), lengths), (probs,))


def test_gradient_through_an_unrolled_inner_loop_matches_finite_differences():
    """What distillation does: train on soft data for a few SGD steps with create_graph, evaluate on real data,
    differentiate with respect to the soft data's logits."""
    model = tiny_model("sasrec", n_layers=1)
    start = {k: v.detach() for k, v in model.named_parameters()}
    real_ids, real_lengths = random_batch(5, seed=4)
    real_targets = torch.randint(1, N_ITEMS + 1, (5,))
    soft_lengths = torch.tensor([MAX_LEN - 1, 3])

    def outer_loss(logits):
        params = {k: v.clone().requires_grad_() for k, v in start.items()}
        probs = torch.softmax(logits, dim=-1)
        for _ in range(2):
            E = params["item_embedding.weight"][1 : N_ITEMS + 1]
            features = functional_call(model, params, (probs @ E, soft_lengths))
            target = probs[torch.arange(2), soft_lengths] @ E  # soft next-item target
            inner = (torch.logsumexp(features @ E.T, dim=1) - (features * target).sum(1)).mean()
            grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
            params = {k: v - 0.5 * g for (k, v), g in zip(params.items(), grads)}
        features = functional_call(model, params, (model.embed_ids(real_ids), real_lengths))
        E = params["item_embedding.weight"][1 : N_ITEMS + 1]
        return torch.nn.functional.cross_entropy(features @ E.T, real_targets - 1)

    logits = torch.randn(2, MAX_LEN, N_ITEMS, dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(outer_loss(logits), logits)
    assert exact.abs().sum() > 0
    eps = 1e-6
    for index in [(0, 0, 0), (0, 4, 3), (1, 2, 7), (1, 3, 1)]:  # position 3 of row 1 is its soft target
        bump = torch.zeros_like(logits)
        bump[index] = eps
        numeric = (outer_loss(logits + bump) - outer_loss(logits - bump)).detach() / (2 * eps)
        torch.testing.assert_close(exact[index], numeric, rtol=1e-5, atol=1e-9)
    # positions the inner loop never reads get no gradient
    assert torch.all(exact[1, 4:] == 0)
