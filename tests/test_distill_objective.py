"""The learners' training objective on vectors: soft and hard targets through one identity."""

from __future__ import annotations

import torch

from td3rec.distill.objective import draw_cut_positions, next_vector_cross_entropy, sequence_loss
from td3rec.models import build_model


def tiny():
    torch.manual_seed(0)
    return build_model("sasrec", 9, 6, hidden_size=8, inner_size=8, hidden_dropout=0.0, attn_dropout=0.0).double().eval()


def test_one_hot_soft_sequences_give_the_hard_cross_entropy():
    model = tiny()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 10, (5, 6), generator=gen)
    lengths = torch.tensor([2, 3, 4, 5, 6])
    ids = ids * (torch.arange(6) < lengths[:, None])
    one_hot = torch.nn.functional.one_hot(ids, 10)[..., 1:].double()  # distributions over items 1..9
    soft = model.embed_soft(one_hot)
    loss = next_vector_cross_entropy(model, soft, lengths - 1, model.item_vectors())
    # naive: scores of the prefix, cross-entropy against the id that follows it
    feats = model.features(ids, lengths - 1)
    targets = ids[torch.arange(5), lengths - 1]
    expected = torch.nn.functional.cross_entropy(model.scores(feats)[:, 1:], targets - 1)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


def test_soft_target_cross_entropy_equals_materialised_version():
    model = tiny()
    gen = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(4, 6, 9, generator=gen, dtype=torch.float64), -1)
    inputs = model.embed_soft(probs)
    lengths = torch.tensor([1, 2, 5, 3])
    loss = next_vector_cross_entropy(model, inputs, lengths, model.item_vectors())
    logp = torch.log_softmax(model.encode(inputs, lengths) @ model.item_vectors().T, -1)
    expected = -(probs[torch.arange(4), lengths] * logp).sum(-1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


def test_augmented_loss_is_the_mean_of_last_and_cut_objectives():
    model = tiny()
    probs = torch.softmax(torch.randn(3, 6, 9, dtype=torch.float64), -1)
    inputs, full = model.embed_soft(probs), torch.full((3,), 6)
    cuts = torch.tensor([1, 3, 5])
    got = sequence_loss(model, inputs, full, model.item_vectors(), True, cuts)
    last = next_vector_cross_entropy(model, inputs, full - 1, model.item_vectors())
    cut = next_vector_cross_entropy(model, inputs, cuts, model.item_vectors())
    torch.testing.assert_close(got, 0.5 * (last + cut))
    torch.testing.assert_close(sequence_loss(model, inputs, full, model.item_vectors(), False), last)


def test_cut_positions_cover_exactly_one_to_length_minus_one():
    gen = torch.Generator().manual_seed(0)
    full = torch.tensor([2, 5, 50] * 2000)
    cuts = draw_cut_positions(full, gen)
    for length in (2, 5, 50):
        seen = set(cuts[full == length].tolist())
        assert seen == set(range(1, length))
