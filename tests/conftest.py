"""Shared fixtures: access to the real benchmark files (``TD3REC_DATA_DIR``), skipped when unavailable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def real_data_dir() -> Path:
    """The folder of real datasets named by ``TD3REC_DATA_DIR``; skips the test when it is not set."""
    value = os.environ.get("TD3REC_DATA_DIR")
    if not value:
        pytest.skip("TD3REC_DATA_DIR is not set (point it at ../shared/data to run real-data tests)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"TD3REC_DATA_DIR={value} is not a folder")
    return path


@pytest.fixture
def real_file(real_data_dir: Path) -> Callable[[str], Path]:
    """``real_file("Beauty.txt")``: the path of a real data file; skips the test when the file is absent."""

    def get(name: str) -> Path:
        path = real_data_dir / name
        if not path.is_file():
            pytest.skip(f"{name} is not in {real_data_dir}")
        return path

    return get


# -- tiny generated runs shared by the reliability tests ------------------------------------------------------

@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """The generated toy dataset (``pipeline_support.write_toy_dataset``), written once per session."""
    from pipeline_support import write_toy_dataset

    return write_toy_dataset(tmp_path_factory.mktemp("toy-data"))


@pytest.fixture(scope="session")
def toy_teacher(toy_data: Path, tmp_path_factory) -> Path:
    """A 3-epoch tiny SASRec teacher run on :func:`toy_data`."""
    from pipeline_support import TRAIN_TINY
    from td3rec.cli import main

    out = tmp_path_factory.mktemp("toy-teacher") / "teacher"
    assert main(["train", "--dataset", str(toy_data), "--epochs", "3", "--out", str(out), *TRAIN_TINY]) == 0
    return out


@pytest.fixture(scope="session")
def toy_gru_teacher(toy_data: Path, tmp_path_factory) -> Path:
    """A 3-epoch tiny GRU4Rec teacher run on :func:`toy_data` (the second architecture of multi-architecture runs)."""
    from td3rec.cli import main

    out = tmp_path_factory.mktemp("toy-gru-teacher") / "teacher"
    assert main(["train", "--dataset", str(toy_data), "--epochs", "3", "--model", "gru4rec", "--out", str(out),
                 "--k-core", "0", "--no-progress", "--set", "eval.protocols=[full]", "--valid-metric", "full:NDCG@10",
                 "--set", "model_options={embedding_size: 12, hidden_size: 16}"]) == 0
    return out


@pytest.fixture(scope="session")
def toy_distill_reference(toy_data: Path, toy_teacher: Path, tmp_path_factory) -> Path:
    """An uninterrupted ``pipeline_support.distill_args`` run, the reference of the resume tests."""
    from pipeline_support import distill_args
    from td3rec.cli import main

    out = tmp_path_factory.mktemp("distill") / "reference"
    assert main(distill_args(toy_data, toy_teacher, out)) == 0
    return out
