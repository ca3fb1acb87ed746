"""Shared helpers of the model tests: tiny float64 learners, random right-padded batches, a toy task."""

from __future__ import annotations

import pytest
import torch

from td3rec.models import MODEL_NAMES, SequentialRecommender, build_model

#: small configs that keep every architectural feature (several layers / heads) but run fast
TINY: dict[str, dict] = {
    "sasrec": dict(n_layers=2, n_heads=2, hidden_size=8, inner_size=12),
    "gru4rec": dict(embedding_size=8, hidden_size=6, n_layers=2),
    "narm": dict(embedding_size=8, hidden_size=6, n_layers=1),
    "bert4rec": dict(n_layers=2, n_heads=2, hidden_size=8, inner_size=12),
}
assert set(TINY) == set(MODEL_NAMES)

N_ITEMS = 9
MAX_LEN = 6


def tiny_model(name: str, seed: int = 0, n_items: int = N_ITEMS, max_len: int = MAX_LEN,
               dtype: torch.dtype = torch.float64, **overrides) -> SequentialRecommender:
    """A tiny float64 learner in eval mode, with non-trivial LayerNorm and bias values (not just the init)."""
    torch.manual_seed(seed)
    model = build_model(name, n_items, max_len, **{**TINY[name], **overrides}).to(dtype)
    with torch.no_grad():  # move every parameter off its special initial value (zeros / ones)
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def random_batch(batch: int, n_items: int = N_ITEMS, max_len: int = MAX_LEN,
                 seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids ``[batch, max_len]`` and lengths covering 1 and ``max_len``."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=gen)
    lengths[0], lengths[-1] = 1, max_len
    ids = torch.randint(1, n_items + 1, (batch, max_len), generator=gen)
    ids[torch.arange(max_len).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return ids, lengths


def one_hot(ids: torch.Tensor, n_items: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Distributions ``[B, L, n_items]``: one-hot at real items, uniform at padding positions."""
    probs = torch.zeros(*ids.shape, n_items, dtype=dtype)
    real = ids > 0
    probs[real] = torch.nn.functional.one_hot(ids[real] - 1, n_items).to(dtype)
    probs[~real] = 1.0 / n_items
    return probs


def successor_task(n: int, n_items: int, max_len: int, gen: torch.Generator):
    """Toy data where the next item is a deterministic function of the previous one (``i -> i % n_items + 1``):
    ids, lengths, targets."""
    start = torch.randint(0, n_items, (n, 1), generator=gen)
    chain = (start + torch.arange(max_len + 1)) % n_items + 1  # [n, max_len + 1], consecutive items
    lengths = torch.randint(1, max_len + 1, (n,), generator=gen)
    targets = chain.gather(1, lengths.unsqueeze(1)).squeeze(1)
    ids = chain[:, :max_len].masked_fill(torch.arange(max_len) >= lengths.unsqueeze(1), 0)
    return ids, lengths, targets


@pytest.fixture(autouse=True)
def one_thread():
    """Run model tests on one thread: their tensors are tiny, and thread hand-offs thrash on a busy machine.
    Test modules import this fixture, which makes it automatic for them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
