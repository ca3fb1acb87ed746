"""Multi-architecture distillation: one summary distilled through several learners (``--model a,b``)."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline_support import DISTILL_TINY, assert_same_summaries, without_timings
from test_distill_inner_loop import (HIDDEN, MAX_LEN, N_ITEMS, N_SEQ, assert_matches_finite_differences, factors,
                                     real_batch)
from test_resume import kill_after_checkpoints
from td3rec.cli import main
from td3rec.config import from_dict
from td3rec.distill.config import DistillConfig, InnerConfig
from td3rec.distill.distiller import outer_loss
from td3rec.distill.distributed import SINGLE_PROCESS
from td3rec.distill.inner_loop import InnerLoop
from td3rec.errors import ConfigError
from td3rec.models import build_model
from td3rec.summary.io import load_summary
from td3rec.summary.readout import tucker_core_product
from td3rec.utils.jsonl import read_jsonl
from td3rec.utils.run_state import RESUME_FILE, load_run_state


# -- settings ---------------------------------------------------------------------------------------------------

def test_architectures_and_round_robin_meta_batches():
    config = DistillConfig(model="sasrec, gru4rec,narm,bert4rec", learners_per_step=1)
    config.validate()
    assert config.architectures == ["sasrec", "gru4rec", "narm", "bert4rec"]
    assert [config.meta_batch(t) for t in range(5)] == [[0], [1], [2], [3], [0]]
    three = DistillConfig(model="sasrec,gru4rec,narm,bert4rec", learners_per_step=3)
    batches = [three.meta_batch(t) for t in range(4)]
    assert all(len(set(b)) == 3 for b in batches)  # no learner twice in a step
    assert sorted(i for b in batches for i in b) == sorted(list(range(4)) * 3)  # each equally often over 4 steps
    every = DistillConfig(model="sasrec,gru4rec")
    assert every.meta_batch_size == 2 and every.meta_batch(7) == [0, 1]
    assert DistillConfig().architectures == ["sasrec"] and DistillConfig().meta_batch(3) == [0]


@pytest.mark.parametrize("settings, message", [
    ({"model": "sasrec,sasrec"}, "twice"),
    ({"model": "sasrec,transformer9"}, "transformer9"),
    ({"model": "sasrec,gru4rec", "learners_per_step": 3}, "learners_per_step"),
    ({"model": "sasrec", "inner": {"augment_by_model": {"gru4rec": False}}}, "augment_by_model"),
])
def test_inconsistent_multi_architecture_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DistillConfig, settings).validate()


def test_augmentation_per_architecture():
    inner = InnerConfig(augment=True, augment_by_model={"gru4rec": False})
    assert inner.augment_for("gru4rec") is False and inner.augment_for("sasrec") is True
    assert InnerConfig(augment=False, augment_by_model={"narm": True}).augment_for("narm") is True


# -- the meta-gradient of a meta-batch ----------------------------------------------------------------------------

def _tiny(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    options = ({"hidden_size": HIDDEN, "inner_size": 6, "hidden_dropout": 0.0, "attn_dropout": 0.0}
               if arch == "sasrec" else {"embedding_size": HIDDEN, "hidden_size": 5, "dropout": 0.0})
    return build_model(arch, N_ITEMS, MAX_LEN, **options).double().eval()  # no dropout: deterministic


def _learner_loss(model, f: dict, teacher_scale: float):
    """Outer loss of ``model`` after a 3-step unroll on the summary ``f`` (every step in the window: the whole
    dependence is differentiated; fixed cuts), against its own teacher features."""
    inner = InnerLoop(model, InnerConfig(lr=0.05, batch_size=2), N_SEQ)
    state = inner.start(dict(model.named_parameters()))
    state = inner.unroll(state, tucker_core_product(f["G"], f["U"], f["T"]), f["V"], 3, 3,
                         torch.Generator().manual_seed(3))
    batch, teacher = real_batch()
    return outer_loss(model, state.params, batch, teacher * teacher_scale, feature_weight=0.7, chunk_size=None)


def test_meta_gradient_of_two_learners_is_the_mean_of_theirs():
    """The meta-batch's meta-gradient (learners back-propagated one after the other) equals the mean of each
    learner's own meta-gradient, and central differences of the mean outer loss."""
    sasrec, gru = _tiny("sasrec"), _tiny("gru4rec")
    f = {k: v.clone().requires_grad_(k != "V") for k, v in factors().items()}
    learned = [f["U"], f["T"], f["G"]]
    loss, _, _ = SINGLE_PROCESS.backward([lambda: _learner_loss(sasrec, f, 1.0), lambda: _learner_loss(gru, f, 0.5)],
                                         learned, 6, 6)
    combined = [p.grad.clone() for p in learned]
    alone = [torch.autograd.grad(_learner_loss(m, f, s)[0], learned) for m, s in ((sasrec, 1.0), (gru, 0.5))]
    for got, a, b in zip(combined, *alone):
        assert torch.allclose(got, (a + b) / 2, rtol=1e-10, atol=1e-14)
        assert not torch.allclose(a, b)  # the two learners do pull differently
    expected = (_learner_loss(sasrec, f, 1.0)[0] + _learner_loss(gru, f, 0.5)[0]).detach() / 2
    assert float(loss) == pytest.approx(float(expected))
    assert_matches_finite_differences(
        lambda g: (_learner_loss(sasrec, g, 1.0)[0] + _learner_loss(gru, g, 0.5)[0]) / 2, f)


def test_one_learner_meta_batch_is_the_plain_backward():
    """A single learner's meta-gradient is that learner's gradient exactly (no rescaling)."""
    sasrec = _tiny("sasrec")
    f = {k: v.clone().requires_grad_(k != "V") for k, v in factors().items()}
    learned = [f["U"], f["T"], f["G"]]
    SINGLE_PROCESS.backward([lambda: _learner_loss(sasrec, f, 1.0)], learned, 6, 6)
    expected = torch.autograd.grad(_learner_loss(sasrec, f, 1.0)[0], learned)
    assert all(torch.equal(p.grad, e) for p, e in zip(learned, expected))


# -- end to end ------------------------------------------------------------------------------------------------------

def _multi_args(data, teachers, out, *extra, model: str = "sasrec,gru4rec"):
    teacher_args = [arg for t in teachers for arg in ("--teacher", str(t))]
    multi = ["--set", "learners_per_step=1", "--set", "inner.augment_by_model={gru4rec: false}"] if "," in model else []
    return ["distill", "--dataset", str(data), *teacher_args, "--model", model, "--epochs", "2",
            "--out", str(out), *DISTILL_TINY, "--set", "checkpoint_every=3", *multi, *extra]


def test_multi_architecture_run_validates_every_learner_and_resumes_bit_for_bit(toy_data, toy_teacher, toy_gru_teacher,
                                                                                 tmp_path):
    reference = tmp_path / "reference"
    # the teachers in either order: they are matched to the architectures by their model
    assert main(_multi_args(toy_data, [toy_gru_teacher, toy_teacher], reference)) == 0
    steps = read_jsonl(reference / "steps.jsonl")
    assert [s["models"] for s in steps] == [["sasrec"], ["gru4rec"]] * 4  # round-robin, one learner per step
    metrics = json.loads((reference / "metrics.json").read_text())
    for row in metrics["history"]:
        by_model = row["valid_by_model"]
        assert sorted(by_model) == ["gru4rec", "sasrec"]
        for metric, value in row["valid"]["full"].items():  # selection reads the mean over the architectures
            assert value == pytest.approx((by_model["sasrec"]["full"][metric] + by_model["gru4rec"]["full"][metric]) / 2)
    _, meta = load_summary(reference / "summary_best.safetensors")
    assert meta["models"] == ["sasrec", "gru4rec"] and meta["teacher_model"] == "sasrec"
    assert meta["teacher_runs"]["gru4rec"] == str(toy_gru_teacher)

    out = tmp_path / "killed"
    kill_after_checkpoints(_multi_args(toy_data, [toy_teacher, toy_gru_teacher], out), 3, tmp_path / "frozen")
    saved = load_run_state(out / RESUME_FILE, "distill")
    assert len(saved["learners"]) == 2 and all(state is not None for state in saved["learners"])
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert_same_summaries(reference, out)
    assert without_timings(read_jsonl(out / "steps.jsonl")) == without_timings(steps)


def test_every_learner_of_a_step_trains(toy_data, toy_teacher, toy_gru_teacher, tmp_path):
    """With every architecture per step, both learners unroll each step (two unroll lengths recorded) and the
    summary differs from a SASRec-only run's from the same seed."""
    both, alone = tmp_path / "both", tmp_path / "alone"
    assert main(_multi_args(toy_data, [toy_teacher, toy_gru_teacher], both, "--set", "learners_per_step=0",
                            "--max-steps", "2")) == 0
    assert all(len(s["unroll"]) == 2 and s["models"] == ["sasrec", "gru4rec"] for s in read_jsonl(both / "steps.jsonl"))
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--epochs", "2", "--out",
                 str(alone), *DISTILL_TINY, "--max-steps", "2"]) == 0
    first, _ = load_summary(both / "summary_last.safetensors")
    second, _ = load_summary(alone / "summary_last.safetensors")
    assert not torch.equal(first["U"], second["U"])


@pytest.mark.parametrize("teachers, model, message", [
    ("sasrec", "sasrec,gru4rec", "none given for gru4rec"),
    ("both", "sasrec", "gru4rec not distilled through"),
    ("sasrec twice", "sasrec,gru4rec", "two teachers are sasrec"),
])
def test_teachers_must_match_the_architectures(toy_data, toy_teacher, toy_gru_teacher, tmp_path, capsys, teachers,
                                               model, message):
    runs = {"sasrec": [toy_teacher], "both": [toy_teacher, toy_gru_teacher], "sasrec twice": [toy_teacher, toy_teacher]}
    assert main(_multi_args(toy_data, runs[teachers], tmp_path / "out", model=model)) == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# -- evaluation of transfer ----------------------------------------------------------------------------------------

def test_shared_item_factor_builds_every_architecture_as_wide_as_v(toy_data, tmp_path):
    """A summary's V is as wide as its primary teacher; the other architectures' shared-item-factor learners are
    built that wide: the suite's row equals a learner trained directly with that width."""
    from pipeline_support import distil_toy_summary
    from td3rec.data.loading import load_dataset
    from td3rec.data.preprocess import PreprocessConfig
    from td3rec.data.sequences import leave_one_out
    from td3rec.evaluation.evaluator import EvalConfig
    from td3rec.evaluation.learner_training import LearnerTrainingConfig
    from td3rec.evaluation.suite import DataSpec, SuiteConfig, _width_options, run_suite, summary_source
    from td3rec.evaluation.summary_eval import evaluate_sources

    summary = distil_toy_summary(toy_data, tmp_path)
    dataset = load_dataset(str(toy_data), PreprocessConfig(k_core=0))
    training = LearnerTrainingConfig(steps=5, batch_size=3)
    config = SuiteConfig(archs=("gru4rec", "bert4rec"), inits=("shared-item-factor",), seeds=1, max_len=10,
                         training=training, eval=EvalConfig(protocols=("full",)))
    rows = run_suite(dataset, [DataSpec("summary", str(summary))], config, torch.device("cpu"))
    source = summary_source(str(summary), dataset, torch.device("cpu"))
    width = source.V.shape[1]
    assert width != 64 and [r["arch"] for r in rows] == ["gru4rec", "bert4rec"]
    for row, field in zip(rows, ("embedding_size", "hidden_size")):
        assert row["learner_width"] == width and row["model_options"] == {field: width}
        direct = evaluate_sources(source, leave_one_out(dataset), arch=row["arch"], protocol="shared-item-factor",
                                  seeds=[0], which="test", max_len=10, eval_config=config.eval,
                                  device=torch.device("cpu"), training=training, model_options={field: width})
        assert row["runs"] == direct["runs"]
    assert _width_options("bert4rec", {"n_heads": 3}, width) is None  # 3 heads cannot split 16 columns
