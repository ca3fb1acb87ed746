"""BERT4Rec-specific checks: the mask token at ``lengths``, the cloze objective, bidirectionality."""

from __future__ import annotations

import torch

from models_support import MAX_LEN, N_ITEMS, random_batch, tiny_model
from models_support import one_thread  # noqa: F401  (autouse fixture)
from td3rec.models import BERT4RecConfig

TIGHT = dict(rtol=1e-12, atol=1e-12)


def test_defaults_are_recbole_defaults():
    config = BERT4RecConfig()
    assert (config.n_layers, config.n_heads, config.hidden_size, config.inner_size) == (2, 2, 64, 256)
    assert (config.hidden_dropout, config.attn_dropout, config.mask_ratio) == (0.2, 0.2, 0.2)


def test_mask_token_row_and_scores_exclude_it():
    model = tiny_model("bert4rec")
    assert model.item_embedding.weight.shape[0] == N_ITEMS + 2
    assert model.mask_id == N_ITEMS + 1
    ids, lengths = random_batch(3)
    assert model.scores(model.features(ids, lengths)).shape == (3, N_ITEMS + 1)


def _with_mask_ids(model, ids, lengths):
    """Ids ``[B, L + 1]`` with the mask token id written at position ``lengths`` (RecBole's reconstruct_test_data)."""
    full = torch.cat([ids, torch.zeros(ids.shape[0], 1, dtype=torch.long)], dim=1)
    for row, length in enumerate(lengths.tolist()):
        full[row, length] = model.mask_id
    return full


def test_features_are_the_head_output_at_the_mask_position():
    model = tiny_model("bert4rec")
    ids, lengths = random_batch(8)  # includes full-length rows: the mask goes to the extra position
    hidden = model.hidden_states(model.embed_ids(_with_mask_ids(model, ids, lengths)), lengths + 1)
    expected = model.output_head(hidden[torch.arange(8), lengths])
    torch.testing.assert_close(model.features(ids, lengths), expected, **TIGHT)


def test_bidirectional_attention_over_real_positions_only():
    model = tiny_model("bert4rec")
    ids = torch.randint(1, N_ITEMS + 1, (1, MAX_LEN))
    n_valid = torch.tensor([4])
    base = model.hidden_states(model.embed_ids(ids), n_valid)
    later, earlier, beyond = ids.clone(), ids.clone(), ids.clone()
    later[0, 3] = later[0, 3] % N_ITEMS + 1
    earlier[0, 0] = earlier[0, 0] % N_ITEMS + 1
    beyond[0, 5] = beyond[0, 5] % N_ITEMS + 1
    # position 1 sees a later and an earlier real item ...
    assert not torch.allclose(model.hidden_states(model.embed_ids(later), n_valid)[0, 1], base[0, 1])
    assert not torch.allclose(model.hidden_states(model.embed_ids(earlier), n_valid)[0, 1], base[0, 1])
    # ... but nothing at or after n_valid
    torch.testing.assert_close(model.hidden_states(model.embed_ids(beyond), n_valid)[:, :4], base[:, :4], **TIGHT)


def test_cloze_with_only_the_target_masked_is_next_item_cross_entropy():
    """Labels of unmasked positions do not count: masking only the appended target gives exactly the
    next-item loss of the prediction features."""
    model = tiny_model("bert4rec")
    ids, lengths = random_batch(6)
    targets = torch.randint(1, N_ITEMS + 1, (6,))
    only_target = torch.arange(MAX_LEN + 1) == lengths.unsqueeze(1)
    expected = model.loss(model.features(ids, lengths), targets)
    torch.testing.assert_close(model.cloze_loss(ids, lengths, targets, only_target), expected, **TIGHT)
    # and mask_ratio = 0 draws exactly that mask
    model.config.mask_ratio = 0.0
    torch.testing.assert_close(model.training_loss(ids, lengths, targets), expected, **TIGHT)


def test_cloze_loss_is_the_mean_over_masked_positions():
    model = tiny_model("bert4rec")
    ids, lengths = random_batch(5)
    targets = torch.randint(1, N_ITEMS + 1, (5,))
    masked = model.draw_cloze_mask(lengths, MAX_LEN, torch.Generator().manual_seed(0))
    masked[:, 0] |= lengths > 1  # make sure some real items are masked
    # independent computation with explicit loops
    losses = []
    for row in range(5):
        length = int(lengths[row])
        seq = ids[row, :length].tolist() + [int(targets[row])]
        inp = [model.mask_id if masked[row, p] else item for p, item in enumerate(seq)]
        hidden = model.hidden_states(model.embed_ids(torch.tensor([inp])), torch.tensor([length + 1]))[0]
        for p in range(length + 1):
            if masked[row, p]:
                log_probs = torch.log_softmax(model.scores(model.output_head(hidden[p : p + 1])), dim=1)
                losses.append(-log_probs[0, seq[p]])
    assert len(losses) > 5
    torch.testing.assert_close(model.cloze_loss(ids, lengths, targets, masked), torch.stack(losses).mean(), **TIGHT)


def test_draw_cloze_mask():
    model = tiny_model("bert4rec")
    lengths = torch.randint(1, 50, (400,))
    masked = model.draw_cloze_mask(lengths, 50, torch.Generator().manual_seed(1))
    positions = torch.arange(51)
    assert masked.shape == (400, 51)
    assert torch.all(masked[positions == lengths.unsqueeze(1)])  # target always masked
    assert not torch.any(masked[positions > lengths.unsqueeze(1)])  # never beyond it
    real = positions < lengths.unsqueeze(1)
    rate = masked[real].float().mean().item()
    assert abs(rate - model.config.mask_ratio) < 0.02
    again = model.draw_cloze_mask(lengths, 50, torch.Generator().manual_seed(1))
    assert torch.equal(masked, again)
    torch.manual_seed(5)
    first = model.draw_cloze_mask(lengths, 50)
    torch.manual_seed(5)
    assert torch.equal(first, model.draw_cloze_mask(lengths, 50))  # global RNG when no generator


def test_training_loss_uses_the_generator():
    model = tiny_model("bert4rec")
    ids, lengths = random_batch(8)
    targets = torch.randint(1, N_ITEMS + 1, (8,))
    loss = lambda seed: model.training_loss(ids, lengths, targets, torch.Generator().manual_seed(seed))  # noqa: E731
    torch.testing.assert_close(loss(0), loss(0), **TIGHT)
    assert not torch.allclose(loss(0), loss(1))


def test_soft_input_path_appends_the_mask_token():
    """Soft vectors work unchanged: ``encode`` places the mask vector itself (nothing to pass for it)."""
    model = tiny_model("bert4rec")
    ids, lengths = random_batch(4)
    probs = torch.softmax(torch.randn(4, MAX_LEN, N_ITEMS, dtype=torch.float64), dim=-1)
    vectors = model.embed_soft(probs)
    padded = torch.cat([vectors, torch.zeros(4, 1, model.hidden_size, dtype=torch.float64)], dim=1)
    padded[torch.arange(4), lengths] = model.item_embedding.weight[model.mask_id]
    expected = model.output_head(model.hidden_states(padded, lengths + 1)[torch.arange(4), lengths])
    torch.testing.assert_close(model.encode(vectors, lengths), expected, **TIGHT)
