"""End to end on generated data: `td3rec train`, `distill` and `evaluate` write what they promise, are
deterministic on CPU, and refuse bad settings before any work."""

from __future__ import annotations

import json

import pytest
import torch

from td3rec.cli import main
from td3rec.summary.io import load_summary
from td3rec.training.checkpoint import load_checkpoint, trajectory

from pipeline_support import write_toy_dataset

COMMON = ["--k-core", "0", "--no-progress", "--set", "eval.protocols=[full]", "--valid-metric", "full:NDCG@10"]
TINY_MODEL = ["--set", "model_options={hidden_size: 16, inner_size: 16}"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    return write_toy_dataset(folder)


@pytest.fixture(scope="module")
def teacher(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["train", "--dataset", str(toy), "--epochs", "3", "--out", str(out), *COMMON, *TINY_MODEL]) == 0
    return out


def test_train_writes_trajectory_best_config_and_metrics(teacher):
    assert [p.name for p in trajectory(teacher)] == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["status"] == "finished" and len(metrics["history"]) == 3
    assert 1 <= metrics["best_epoch"] <= 3
    assert (teacher / "config.yaml").is_file() and (teacher / "best.pt").is_file()
    model, meta = load_checkpoint(teacher / "best.pt")
    assert meta["epoch"] == metrics["best_epoch"] and model.hidden_size == 16
    # the best checkpoint is the trajectory checkpoint of the best epoch
    same, _ = load_checkpoint(trajectory(teacher)[metrics["best_epoch"] - 1])
    for (k, a), (_, b) in zip(model.state_dict().items(), same.state_dict().items()):
        assert torch.equal(a, b), k


def test_train_is_deterministic_on_cpu(toy, tmp_path):
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["train", "--dataset", str(toy), "--epochs", "2", "--out", str(out), "--mode", "window",
                     *COMMON, *TINY_MODEL]) == 0
        results.append(json.loads((out / "metrics.json").read_text()))
        model, _ = load_checkpoint(out / "best.pt")
        results[-1]["weights"] = [v.clone() for v in model.state_dict().values()]
    assert results[0]["test"] == results[1]["test"]
    assert all(torch.equal(a, b) for a, b in zip(results[0]["weights"], results[1]["weights"]))


def test_existing_output_folder_needs_overwrite(toy, teacher, capsys):
    code = main(["train", "--dataset", str(toy), "--epochs", "1", "--out", str(teacher), *COMMON])
    assert code == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--set", "window=50", "--inner-steps", "10"], "window 50 is larger than inner_steps 10"),
    (["--n-sequences", "0"], "n_sequences must be positive"),
    (["--set", "reset=sometimes"], "reset must be one of"),
    (["--set", "no_such_option=1"], "unknown setting"),
])
def test_distill_rejects_bad_settings_before_work(toy, tmp_path, capsys, args, message):
    code = main(["distill", "--dataset", str(toy), "--out", str(tmp_path / "d"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_distill_then_evaluate(toy, teacher, tmp_path, capsys):
    out = tmp_path / "distill"
    code = main(["distill", "--dataset", str(toy), "--k-core", "0", "--teacher", str(teacher), "--n-sequences", "6",
                 "--seq-len", "8", "--d1", "4", "--d2", "4", "--inner-steps", "4", "--window", "2",
                 "--real-batch-size", "512", "--epochs", "2", "--out", str(out), "--no-progress",
                 "--set", "inner.batch_size=3", "--set", "eval_steps=10", "--set", "eval.protocols=[full]",
                 "--set", "select_metric=full:MRR@10", "--set", "trajectory_epochs=[1, 3]"])
    assert code == 0
    tensors, meta = load_summary(out / "summary_best.safetensors")
    assert tensors["U"].shape == (6, 4) and tensors["T"].shape == (8, 4) and tensors["G"].shape == (4, 4, 16)
    teacher_model, _ = load_checkpoint(teacher / "best.pt")
    assert torch.equal(tensors["V"], teacher_model.item_vectors().detach())  # V is the teacher's item embedding
    assert meta["method"] == "td3" and len(meta["item_tokens"]) == tensors["V"].shape[0]
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert steps and all(2 <= s["unroll"] <= 4 for s in steps)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["summary_parameters"] == 6 * 4 + 8 * 4 + 4 * 4 * 16

    results = tmp_path / "eval.json"
    code = main(["evaluate", "--dataset", str(toy), "--k-core", "0", "--summary", str(out / "summary_best.safetensors"),
                 "--subset", "random", "--subset", "longest", "--n", "6", "--teacher", str(teacher),
                 "--seeds", "2", "--steps", "5", "--set", "eval.protocols=[full]", "--json", str(results)])
    assert code == 0
    rows = json.loads(results.read_text())["rows"]
    cells = {(r["data"].split(":")[0], r["init"]) for r in rows}
    assert cells == {(d, i) for d in ("summary", "random-6", "longest-6")
                     for i in ("reference", "shared-item-factor", "scratch")}
    assert all(len(r["runs"]) == 2 for r in rows)
    out_text = capsys.readouterr().out
    assert "shared-item-factor" in out_text and "reference" in out_text


def test_summary_of_other_dataset_is_refused(toy, teacher, tmp_path, capsys):
    other = write_toy_dataset(tmp_path, seed=7)
    from td3rec.summary.io import save_summary

    save_summary(tmp_path / "s.safetensors", {"U": torch.zeros(2, 2), "T": torch.zeros(3, 2),
                                              "G": torch.zeros(2, 2, 16), "V": torch.zeros(120, 16)},
                 {"dataset_fingerprint": "not-this-one"})
    code = main(["evaluate", "--dataset", str(other), "--k-core", "0", "--summary", str(tmp_path / "s.safetensors"),
                 "--init", "scratch", "--seeds", "1", "--steps", "1", "--set", "eval.protocols=[full]"])
    assert code == 2
    assert "different fingerprint" in capsys.readouterr().err
