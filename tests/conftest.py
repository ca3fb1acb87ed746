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
