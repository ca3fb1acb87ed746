"""Contract tests every learner must pass (the soft/hard interface of DESIGN §2), parametrised over all models.

Model-specific checks live in ``test_models_<name>.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.func import functional_call

from models_support import one_thread  # noqa: F401  (autouse fixture)
from models_support import MAX_LEN, N_ITEMS, TINY, one_hot, random_batch, successor_task, tiny_model
from td3rec.data.sequences import Examples
from td3rec.models import MODEL_NAMES, build_model, model_config_class

TIGHT = dict(rtol=1e-12, atol=1e-12)
CAUSAL = [name for name in MODEL_NAMES if build_model(name, 3, 2).causal]

all_models = pytest.mark.parametrize("name", MODEL_NAMES)


# -- construction -------------------------------------------------------------------------------------
@all_models
def test_defaults_shapes_and_stored_config(name):
    model = build_model(name, n_items=13, max_len=7)
    config_class = model_config_class(name)
    assert model.config == config_class()
    assert model.name == name
    assert model.hidden_size == model.config.feature_size
    assert model.item_embedding.weight.shape[0] >= 14
    assert model.item_vectors().shape == (13, model.hidden_size)
    assert torch.all(model.item_embedding.weight[0] == 0)  # padding row


@all_models
def test_rebuild_from_stored_config_gives_same_model(name):
    model = tiny_model(name)
    twin = build_model(name, model.n_items, model.max_len, **dataclasses.asdict(model.config)).double().eval()
    twin.load_state_dict(model.state_dict())
    ids, lengths = random_batch(5)
    torch.testing.assert_close(twin.features(ids, lengths), model.features(ids, lengths), **TIGHT)


# -- soft and hard input ------------------------------------------------------------------------------
@all_models
def test_one_hot_soft_input_equals_hard_input(name):
    model = tiny_model(name)
    ids, lengths = random_batch(8)
    hard = model.features(ids, lengths)
    soft = model.encode(model.embed_soft(one_hot(ids, N_ITEMS)), lengths)
    torch.testing.assert_close(soft, hard, **TIGHT)
    # the check has teeth: a different sequence gives different features
    assert not torch.allclose(model.features(ids.flip(0), lengths.flip(0)), hard)


@all_models
def test_positions_at_or_after_lengths_are_ignored(name):
    model = tiny_model(name)
    ids, lengths = random_batch(8)
    beyond = torch.arange(MAX_LEN).unsqueeze(0) >= lengths.unsqueeze(1)
    noisy_ids = torch.where(beyond, torch.randint(1, N_ITEMS + 1, ids.shape), ids)
    torch.testing.assert_close(model.features(noisy_ids, lengths), model.features(ids, lengths), **TIGHT)

    vectors = model.embed_ids(ids)
    noisy_vectors = torch.where(beyond.unsqueeze(-1), 5 * torch.randn_like(vectors), vectors)
    torch.testing.assert_close(model.encode(noisy_vectors, lengths), model.encode(vectors, lengths), **TIGHT)


@all_models
def test_trimmed_batch_gives_the_same_features_and_window_loss(name):
    """``Examples.trimmed`` (used by training and evaluation) drops all-padding columns: nothing may change."""
    model = tiny_model(name)
    ids, lengths = random_batch(8)
    lengths = lengths.clamp(max=MAX_LEN - 2)  # the last two columns are padding in every row
    ids = ids * (torch.arange(MAX_LEN).unsqueeze(0) < lengths.unsqueeze(1))
    targets = torch.randint(1, N_ITEMS + 1, (8,))
    examples = Examples(ids, lengths, targets, torch.arange(8))
    short = examples.trimmed()
    assert short.inputs.shape == (8, MAX_LEN - 2)
    torch.testing.assert_close(model.features(short.inputs, short.lengths), model.features(ids, lengths), **TIGHT)
    if name != "bert4rec":  # the cloze loss draws a random mask whose shape follows the width
        torch.testing.assert_close(model.window_loss(short.inputs, short.lengths, targets),
                                   model.window_loss(ids, lengths, targets), **TIGHT)
    full = Examples(ids, torch.full((8,), MAX_LEN), targets, torch.arange(8))
    assert full.trimmed() is full


@all_models
def test_padding_ignored_in_train_mode_too(name):
    model = tiny_model(name).train()
    ids, lengths = random_batch(8)
    beyond = torch.arange(MAX_LEN).unsqueeze(0) >= lengths.unsqueeze(1)
    noisy_ids = torch.where(beyond, torch.randint(1, N_ITEMS + 1, ids.shape), ids)
    torch.manual_seed(3)  # same dropout masks in both calls
    clean = model.features(ids, lengths)
    torch.manual_seed(3)
    torch.testing.assert_close(model.features(noisy_ids, lengths), clean, **TIGHT)


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_prefix_does_not_see_later_positions(name):
    model = tiny_model(name)
    ids, _ = random_batch(6)
    full = torch.full((ids.shape[0],), MAX_LEN)
    ids = torch.randint(1, N_ITEMS + 1, ids.shape)
    prefixes = model.encode_prefixes(model.embed_ids(ids), full)
    for t in range(1, MAX_LEN + 1):
        lengths_t = torch.full_like(full, t)
        torch.testing.assert_close(prefixes[:, t - 1], model.features(ids, lengths_t), **TIGHT)
        later = ids.clone()
        later[:, t:] = torch.randint(1, N_ITEMS + 1, later[:, t:].shape)
        changed = model.encode_prefixes(model.embed_ids(later), full)
        torch.testing.assert_close(changed[:, :t], prefixes[:, :t], **TIGHT)


@all_models
def test_encode_prefixes_matches_encode_of_each_prefix(name):
    model = tiny_model(name)
    ids, lengths = random_batch(6)
    vectors = model.embed_ids(ids)
    prefixes = model.encode_prefixes(vectors, lengths)
    assert prefixes.shape == (ids.shape[0], MAX_LEN, model.hidden_size)
    for t in range(MAX_LEN):
        rows = lengths > t
        expected = model.encode(vectors[rows], torch.full_like(lengths[rows], t + 1))
        torch.testing.assert_close(prefixes[rows, t], expected, **TIGHT)


# -- outputs ------------------------------------------------------------------------------------------
@all_models
def test_scores_are_features_times_item_embeddings(name):
    model = tiny_model(name)
    ids, lengths = random_batch(5)
    features = model.features(ids, lengths)
    scores = model.scores(features)
    assert features.shape == (5, model.hidden_size)
    assert scores.shape == (5, N_ITEMS + 1)
    assert torch.all(scores[:, 0] == float("-inf"))
    torch.testing.assert_close(scores[:, 1:], features @ model.item_embedding.weight[1 : N_ITEMS + 1].T, **TIGHT)


@all_models
def test_loss_is_cross_entropy_of_scores(name):
    model = tiny_model(name)
    ids, lengths = random_batch(7)
    targets = torch.randint(1, N_ITEMS + 1, (7,))
    features = model.features(ids, lengths)
    log_probs = torch.log_softmax(model.scores(features), dim=1)
    naive = -log_probs[torch.arange(7), targets].mean()
    torch.testing.assert_close(model.loss(features, targets), naive, **TIGHT)


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_training_loss_is_next_item_cross_entropy(name):
    model = tiny_model(name)
    ids, lengths = random_batch(7)
    targets = torch.randint(1, N_ITEMS + 1, (7,))
    expected = model.loss(model.features(ids, lengths), targets)
    torch.testing.assert_close(model.training_loss(ids, lengths, targets), expected, **TIGHT)


@all_models
def test_dropout_only_in_train_mode(name):
    model = tiny_model(name)
    ids, lengths = random_batch(6)
    torch.testing.assert_close(model.features(ids, lengths), model.features(ids, lengths), **TIGHT)
    model.train()
    assert not torch.allclose(model.features(ids, lengths), model.features(ids, lengths))


# -- functional use (distillation) --------------------------------------------------------------------
@all_models
def test_functional_call_matches_module_with_those_parameters(name):
    model = tiny_model(name)
    ids, lengths = random_batch(6)
    vectors = model.embed_ids(ids)
    params = {k: v + 0.05 * torch.randn_like(v) for k, v in model.named_parameters()}
    functional = functional_call(model, params, (vectors, lengths))
    assert not torch.allclose(functional, model(vectors, lengths))  # really used the new parameters
    model.load_state_dict(params, strict=False)
    torch.testing.assert_close(functional, model.encode(vectors, lengths), **TIGHT)


@all_models
def test_gradcheck_encode_wrt_soft_inputs(name):
    model = tiny_model(name, n_items=4, max_len=3)
    lengths = torch.tensor([3, 1, 2])
    probs = torch.softmax(torch.randn(3, 3, 4, dtype=torch.float64), dim=-1).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: model.encode(model.embed_soft(p), lengths), (probs,))


def _hvp_loss(model, params, ids, lengths, targets):
    """Next-item loss through ``functional_call`` on hard input (deterministic for every model)."""
    features = functional_call(model, params, (model.embed_ids(ids), lengths))
    return torch.nn.functional.cross_entropy(features @ params["item_embedding.weight"][1 : N_ITEMS + 1].T, targets - 1)


@all_models
def test_double_backward_matches_finite_differences(name):
    """Hessian-vector products (what differentiating through an inner training step needs) are exact."""
    model = tiny_model(name)
    ids, lengths = random_batch(4)
    targets = torch.randint(1, N_ITEMS + 1, (4,))
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    direction = {k: torch.randn_like(v) for k, v in params.items()}

    def gradient(p):
        return torch.autograd.grad(_hvp_loss(model, p, ids, lengths, targets), list(p.values()), create_graph=True)

    grads = gradient(params)
    directional = sum((g * direction[k]).sum() for g, k in zip(grads, params))
    hvp = torch.autograd.grad(directional, list(params.values()))
    eps = 1e-5
    plus = gradient({k: (v + eps * direction[k]).detach().requires_grad_() for k, v in params.items()})
    minus = gradient({k: (v - eps * direction[k]).detach().requires_grad_() for k, v in params.items()})
    for key, exact, gp, gm in zip(params, hvp, plus, minus):
        assert torch.isfinite(exact).all(), key
        torch.testing.assert_close(exact, (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-7, msg=key)


@all_models
def test_double_backward_in_train_mode_through_training_loss(name):
    """Dropout and (for BERT4Rec) the cloze objective support create_graph too."""
    model = tiny_model(name).train()
    ids, lengths = random_batch(4)
    targets = torch.randint(1, N_ITEMS + 1, (4,))
    params = dict(model.named_parameters())
    torch.manual_seed(0)
    loss = model.training_loss(ids, lengths, targets)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
    second = torch.autograd.grad(sum((g**2).sum() for g in grads if g is not None), list(params.values()),
                                 allow_unused=True)
    used = [g for g in second if g is not None]
    assert used and all(torch.isfinite(g).all() for g in used)
    assert any(g.abs().sum() > 0 for g in used)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@all_models
def test_cuda_forward_and_double_backward(name):
    model = tiny_model(name, dtype=torch.float32).cuda().train()
    ids, lengths = random_batch(4)
    ids, lengths = ids.cuda(), lengths.cuda()
    targets = torch.randint(1, N_ITEMS + 1, (4,), device="cuda")
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(model.training_loss(ids, lengths, targets), list(params.values()), create_graph=True)
    second = torch.autograd.grad(sum((g**2).sum() for g in grads), list(params.values()), allow_unused=True)
    assert all(torch.isfinite(g).all() for g in second if g is not None)
    model.eval()
    cpu = tiny_model(name, dtype=torch.float32)
    torch.testing.assert_close(model.features(ids, lengths).cpu(), cpu.features(ids.cpu(), lengths.cpu()),
                               rtol=1e-4, atol=1e-5)


# -- learning -----------------------------------------------------------------------------------------
#: per model: (config overrides, Adam steps); small models so each run takes about a second on one core
SANITY: dict[str, tuple[dict, int]] = {
    "sasrec": ({}, 200),
    "gru4rec": (dict(embedding_size=32, hidden_size=64), 150),
    "narm": (dict(embedding_size=32, hidden_size=64), 150),
    "bert4rec": (dict(n_layers=1, hidden_size=32, inner_size=64, hidden_dropout=0.0, attn_dropout=0.0), 400),
}


@all_models
def test_learns_a_deterministic_successor_task(name):
    overrides, steps = SANITY[name]
    n_items, max_len = 20, 6
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(name, n_items, max_len, **overrides)
    ids, lengths, targets = successor_task(1024, n_items, max_len, gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(targets), (64,), generator=gen)
        loss = model.training_loss(ids[batch], lengths[batch], targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_ids, test_lengths, test_targets = successor_task(500, n_items, max_len, gen)
    with torch.no_grad():
        predicted = model.scores(model.features(test_ids, test_lengths)).argmax(dim=1)
    assert (predicted == test_targets).float().mean() > 0.9


# -- configuration ------------------------------------------------------------------------------------
def test_unknown_model_name_is_a_config_error():
    from td3rec.errors import ConfigError

    with pytest.raises(ConfigError, match="valid models: sasrec, gru4rec, narm, bert4rec"):
        build_model("transformer", 10, 5)
    with pytest.raises(ConfigError):
        model_config_class("nope")


@all_models
def test_unknown_or_invalid_override_is_a_config_error(name):
    from td3rec.errors import ConfigError

    with pytest.raises(ConfigError, match="valid options: "):
        build_model(name, 10, 5, hiden_size=3)
    first = dataclasses.fields(model_config_class(name))[0].name
    with pytest.raises(ConfigError, match=first):
        build_model(name, 10, 5, **{first: "many"})
    with pytest.raises(ConfigError, match=first):
        build_model(name, 10, 5, **{first: 0})
    with pytest.raises(ConfigError, match="n_items"):
        build_model(name, 0, 5)


@all_models
def test_overrides_are_coerced_and_every_field_documented(name):
    config_class = model_config_class(name)
    first = dataclasses.fields(config_class)[0].name
    model = build_model(name, 10, 5, **{first: "2"})
    assert getattr(model.config, first) == 2
    for field in dataclasses.fields(config_class):
        assert f"{field.name}:" in config_class.__doc__, f"{name}: field {field.name} undocumented"


@all_models
def test_feature_field_sets_the_feature_dimension(name):
    field = model_config_class(name).feature_field
    model = build_model(name, 5, 3, **{field: 12})
    assert model.hidden_size == model.config.feature_size == 12
    assert model.features(torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 1])).shape == (2, 12)
    assert model.item_vectors().shape == (5, 12)


def test_integer_like_sizes_are_accepted():
    import numpy as np

    model = build_model("sasrec", np.int64(5), torch.tensor(3))
    assert (model.n_items, model.max_len) == (5, 3) and type(model.n_items) is int


def test_name_lookup_is_case_insensitive():
    assert build_model("SASRec", 5, 3).name == "sasrec"


def test_tiny_configs_cover_every_model():
    assert set(TINY) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_single_query_last_layer_equals_full_computation(name):
    """encode() computes only the needed query in the last layer; it must equal the full hidden states
    gathered at that position (several layers and heads, float64)."""
    from td3rec.models.positions import gather_positions

    model = tiny_model(name)
    ids, lengths = random_batch(9)
    inputs = model.embed_ids(ids)
    if name == "sasrec":
        full = gather_positions(model.hidden_states(inputs, lengths), lengths - 1)
    else:
        full = model.output_head(gather_positions(model.hidden_states(model.with_mask_token(inputs, lengths),
                                                                      lengths + 1), lengths))
    torch.testing.assert_close(model.encode(inputs, lengths), full, rtol=1e-12, atol=1e-12)
