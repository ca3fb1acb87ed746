"""The TD3 ablations run end to end through `td3rec distill` and each changes what it says it changes:
no feature alignment, no augmentation, fixed unroll (and full BPTT), learned item factor, reset per step."""

from __future__ import annotations

import json

import pytest
import torch

from td3rec.cli import main
from td3rec.distill import inner_loop
from td3rec.distill.distiller import Distiller
from td3rec.summary.io import load_summary
from td3rec.training.checkpoint import load_checkpoint

from pipeline_support import DISTILL_TINY


def _distill(toy_data, toy_teacher, out, *settings: str) -> list[dict]:
    """2 epochs x 4 outer steps (inner_steps 4, window 2) with ``settings`` (``key=value`` or ``--flag value``)."""
    extra = [arg for s in settings for arg in (s.split(" ", 1) if s.startswith("--") else ("--set", s))]
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--epochs", "2",
                 "--out", str(out), *DISTILL_TINY, *extra]) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "finished"
    assert (out / "summary_best.safetensors").is_file()
    return [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]


@pytest.fixture
def counted(monkeypatch):
    """Counts of the learner starts and of the inner loop's cut-position draws."""
    counts = {"starts": 0, "cuts": 0}
    start, cuts = Distiller._start_params, inner_loop.draw_cut_positions

    def counting_start(self, *args, **kwargs):
        counts["starts"] += 1
        return start(self, *args, **kwargs)

    def counting_cuts(*args, **kwargs):
        counts["cuts"] += 1
        return cuts(*args, **kwargs)

    monkeypatch.setattr(Distiller, "_start_params", counting_start)
    monkeypatch.setattr(inner_loop, "draw_cut_positions", counting_cuts)
    return counts


def test_reference_settings_for_comparison(toy_data, toy_teacher, tmp_path, counted):
    steps = _distill(toy_data, toy_teacher, tmp_path / "td3")
    assert len(steps) == 8 and counted["starts"] == 2  # one learner start per outer epoch
    assert counted["cuts"] > 0  # the augmented objective draws cut positions
    assert any(s["unroll"] < 4 for s in steps)  # RaT-BPTT draws unroll lengths in [window, inner_steps]
    assert all(s["loss"] > s["ce"] for s in steps)  # + λ · MSE
    tensors, _ = load_summary(tmp_path / "td3" / "summary_best.safetensors")
    teacher, _ = load_checkpoint(toy_teacher / "best.pt")
    assert torch.equal(tensors["V"], teacher.item_vectors().detach())


def test_no_feature_alignment(toy_data, toy_teacher, tmp_path):
    steps = _distill(toy_data, toy_teacher, tmp_path / "d", "feature_weight=0")
    assert all(s["loss"] == s["ce"] and s["mse"] > 0 for s in steps)


def test_no_augmentation(toy_data, toy_teacher, tmp_path, counted):
    _distill(toy_data, toy_teacher, tmp_path / "d", "inner.augment=false")
    assert counted["cuts"] == 0


@pytest.mark.parametrize("settings", [["random_unroll=false"], ["--window 4"]])
def test_fixed_unroll(toy_data, toy_teacher, tmp_path, settings):
    steps = _distill(toy_data, toy_teacher, tmp_path / "d", *settings)
    assert all(s["unroll"] == 4 for s in steps)  # always inner_steps


def test_learned_item_factor(toy_data, toy_teacher, tmp_path):
    _distill(toy_data, toy_teacher, tmp_path / "d", "learn_item_factor=true")
    tensors, meta = load_summary(tmp_path / "d" / "summary_last.safetensors")
    teacher, _ = load_checkpoint(toy_teacher / "best.pt")
    assert meta["config"]["learn_item_factor"] is True
    assert not torch.allclose(tensors["V"], teacher.item_vectors().detach())  # V was learned
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["summary_parameters"] == 6 * 4 + 8 * 4 + 4 * 4 * 16


def test_learner_reset_per_outer_step(toy_data, toy_teacher, tmp_path, counted):
    steps = _distill(toy_data, toy_teacher, tmp_path / "d", "reset=step")
    assert counted["starts"] == len(steps) == 8


@pytest.mark.parametrize("protocol", ["shared-item-factor", "scratch"])
def test_learner_start_from_the_validation_protocol(toy_data, toy_teacher, tmp_path, monkeypatch, protocol):
    """``learner_start=protocol``: every inner learner starts like a validation learner (V as item embedding for
    shared-item-factor, all random for scratch), never from the teacher's weights."""
    starts = []
    start = inner_loop.InnerLoop.start

    def capturing_start(self, params):
        starts.append({k: v.detach().clone() for k, v in params.items()})
        return start(self, params)

    monkeypatch.setattr(inner_loop.InnerLoop, "start", capturing_start)
    steps = _distill(toy_data, toy_teacher, tmp_path / "d", "learner_start=protocol", f"eval_init={protocol}",
                     "reset=step")
    assert len(starts) == len(steps) == 8
    teacher, _ = load_checkpoint(toy_teacher / "best.pt")
    teacher_params = dict(teacher.named_parameters())
    V = teacher.item_vectors().detach()
    for params in starts:
        item_rows = params["item_embedding.weight"][1:]
        assert torch.equal(item_rows, V) == (protocol == "shared-item-factor")
        for name, value in params.items():
            if name != "item_embedding.weight" and value.numel() > 1 and value.std() > 0:
                assert not torch.equal(value, teacher_params[name].detach()), name  # a fresh weight
    others = [k for k in starts[0] if k != "item_embedding.weight" and starts[0][k].std() > 0]
    assert any(not torch.equal(starts[0][k], starts[1][k]) for k in others)  # each start draws anew


def test_learner_start_setting_is_checked(toy_data, toy_teacher, tmp_path, capsys):
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--out", str(tmp_path / "d"),
                 *DISTILL_TINY, "--set", "learner_start=teacher"]) == 2
    assert "learner_start must be one of trajectory, protocol" in capsys.readouterr().err


def test_meta_item_factor_learns_v_as_the_learners_start(toy_data, toy_teacher, tmp_path, monkeypatch):
    """With ``meta_item_factor`` every unroll ties its window's first item embedding to V (and only then);
    without ``learn_item_factor`` (or with another learner start) the setting is refused before any work."""
    anchors = []
    unroll = inner_loop.InnerLoop.unroll

    def recording_unroll(self, *args, **kwargs):
        anchors.append(kwargs.get("anchor", args[7] if len(args) > 7 else None))
        return unroll(self, *args, **kwargs)

    monkeypatch.setattr(inner_loop.InnerLoop, "unroll", recording_unroll)
    base = ["learner_start=protocol", "eval_init=shared-item-factor", "learn_item_factor=true"]
    _distill(toy_data, toy_teacher, tmp_path / "tied", *base, "meta_item_factor=true")
    assert anchors and all(a is not None and a.requires_grad for a in anchors)
    anchors.clear()
    _distill(toy_data, toy_teacher, tmp_path / "free", *base)
    assert anchors and all(a is None for a in anchors)
    tied, _ = load_summary(tmp_path / "tied" / "summary_last.safetensors")
    free, _ = load_summary(tmp_path / "free" / "summary_last.safetensors")
    assert not torch.equal(tied["V"], free["V"])  # the tie's gradient moved V differently
    for setting in (["learner_start=protocol", "eval_init=shared-item-factor"], base[1:]):
        args = ["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--out", str(tmp_path / "x"),
                *DISTILL_TINY, *[a for s in setting + ["meta_item_factor=true"] for a in ("--set", s)]]
        assert main(args) == 2
