"""bf16 autocast of the learner work: the meta-gradient stays close to float32's (and autocast really ran);
unsupported precisions are refused before any work."""

from __future__ import annotations

import pytest
import torch

from td3rec.distill.config import DistillConfig, InnerConfig
from td3rec.distill.distiller import outer_loss
from td3rec.distill.inner_loop import InnerLoop
from td3rec.errors import ConfigError
from td3rec.models import build_model
from td3rec.data.sequences import Examples

N_ITEMS, L, N_SEQ = 60, 8, 6


def meta_gradient(precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``d outer loss / d W`` through a 6-step unroll (window 3) and the outer loss, at ``precision``."""
    torch.manual_seed(0)
    model = build_model("sasrec", N_ITEMS, L, hidden_size=16, inner_size=16)
    inner = InnerLoop(model, InnerConfig(lr=0.01, batch_size=3), N_SEQ, None, precision)
    W = (0.3 * torch.randn(N_SEQ, L, 16)).requires_grad_()
    V = model.item_vectors().detach().clone()
    state = inner.unroll(inner.start(dict(model.named_parameters())), W, V, 6, 3, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, L + 1, (32,), generator=gen)
    ids = torch.randint(1, N_ITEMS + 1, (32, L), generator=gen) * (torch.arange(L) < lengths[:, None])
    batch = Examples(ids, lengths, torch.randint(1, N_ITEMS + 1, (32,), generator=gen), torch.arange(32))
    model.eval()
    loss, _, _ = outer_loss(model, state.params, batch, torch.randn(32, 16, generator=gen), 1.0, None, precision)
    assert loss.dtype == torch.float32
    (grad,) = torch.autograd.grad(loss, [W])
    return grad, loss.detach()


def test_bf16_meta_gradient_is_close_to_fp32():
    exact, loss32 = meta_gradient("fp32")
    bf16, loss16 = meta_gradient("bf16")
    assert torch.isfinite(bf16).all()
    cosine = torch.nn.functional.cosine_similarity(exact.flatten(), bf16.flatten(), dim=0)
    # bf16 keeps 8 mantissa bits: the second-order meta-gradient is a noisy version of float32's (cosine 0.79,
    # norm ratio 0.95 measured here); a broken graph (no gradient through the window) would give ~0 or NaN
    assert cosine > 0.6, float(cosine)
    assert (bf16.norm() / exact.norm() - 1).abs() < 0.2
    assert abs(float(loss16 - loss32)) < 0.02 * abs(float(loss32))
    assert not torch.equal(exact, bf16)  # autocast did run in lower precision


@pytest.mark.parametrize("precision", ["fp16", "fp64", "half"])
def test_unsupported_precision_is_refused(precision):
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16"):
        DistillConfig(precision=precision).validate()


def test_cli_refuses_fp16_with_a_hint(tmp_path, capsys):
    from td3rec.cli import main

    data = tmp_path / "d.txt"
    data.write_text("".join(f"u{u} " + " ".join(str(1 + (u + t) % 9) for t in range(6)) + "\n" for u in range(20)))
    assert main(["distill", "--dataset", str(data), "--precision", "fp16", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "use bf16" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
