"""NARM-specific checks: RecBole's formula (global + unnormalised local attention, bilinear projection)."""

from __future__ import annotations

import torch

from models_support import random_batch, tiny_model
from models_support import one_thread  # noqa: F401  (autouse fixture)
from td3rec.models import NARMConfig


def test_defaults_are_recbole_defaults():
    config = NARMConfig()
    assert (config.embedding_size, config.hidden_size, config.n_layers) == (64, 128, 1)
    assert (config.emb_dropout, config.ct_dropout) == (0.25, 0.5)
    assert config.feature_size == 64


def _recbole_features(model, ids, lengths):
    """RecBole's NARM.forward with torch's GRU and the padding mask taken from the item ids."""
    reference = torch.nn.GRU(model.config.embedding_size, model.config.hidden_size, model.config.n_layers,
                             bias=False, batch_first=True).double()
    reference.load_state_dict(model.gru.state_dict())
    gru_out, _ = reference(model.item_embedding(ids))
    ht = gru_out[torch.arange(ids.shape[0]), lengths - 1]
    mask = ids.gt(0).unsqueeze(2).expand_as(gru_out)
    q1 = model.a_1(gru_out)
    q2 = model.a_2(ht).unsqueeze(1).expand_as(q1)
    alpha = model.v_t(mask * torch.sigmoid(q1 + q2))
    c_local = torch.sum(alpha.expand_as(gru_out) * gru_out, 1)
    return model.b(torch.cat([c_local, ht], 1))


def test_features_match_recbole_formula():
    model = tiny_model("narm")
    ids, lengths = random_batch(7)
    torch.testing.assert_close(model.features(ids, lengths), _recbole_features(model, ids, lengths),
                               rtol=1e-12, atol=1e-12)


def test_local_attention_reads_every_real_position():
    """Changing the first item changes the local summary even for long sequences (not just the last state)."""
    model = tiny_model("narm")
    ids, lengths = random_batch(6)
    changed = ids.clone()
    changed[:, 0] = changed[:, 0] % 9 + 1
    with torch.no_grad():  # neutralise the recurrent path: local attention must still carry the change
        model.gru.weight_hh_l0.zero_()
    full = lengths > 1
    diff = (model.features(changed, lengths) - model.features(ids, lengths))[full].abs().sum(1)
    assert torch.all(diff > 1e-6)
