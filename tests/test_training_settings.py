"""`td3rec train` refuses impossible settings with one clear line and exit code 2, before any work."""

from __future__ import annotations

import pytest

from td3rec.cli import main

from pipeline_support import write_toy_dataset


@pytest.mark.parametrize("args, message", [
    (["--model", "transformerxl"], "unknown model"),
    (["--epochs", "0"], "epochs must be positive"),
    (["--valid-metric", "full:NDCG"], "valid_metric"),
    (["--valid-metric", "pop100:NDCG@10"], "not among the evaluated protocols"),
    (["--device", "tpu"], "unknown device"),
    (["--set", "mode=sideways"], "mode must be prefix or window"),
    (["--set", "lr=fast"], "cannot read 'fast' as float"),
    (["--set", "model_options={hidden_sise: 8}"], "hidden_sise"),
])
def test_bad_training_settings(tmp_path, capsys, args, message):
    data = write_toy_dataset(tmp_path)
    out = tmp_path / "run"
    code = main(["train", "--dataset", str(data), "--k-core", "0", "--out", str(out), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.lower() in err.lower()
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
