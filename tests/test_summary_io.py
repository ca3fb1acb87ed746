"""Summary files: bit-for-bit round trip, fingerprint check, refusal of corrupted or non-finite data."""

from __future__ import annotations

import pytest
import torch

from td3rec.errors import DataError
from td3rec.summary.io import load_summary, save_summary


def tensors():
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(*shape, generator=gen) for k, shape in
            {"U": (5, 3), "T": (4, 3), "G": (3, 3, 2), "V": (7, 2)}.items()}


def test_round_trip_is_bit_for_bit(tmp_path):
    t = tensors()
    save_summary(tmp_path / "s.safetensors", t, {"dataset_fingerprint": "abc", "method": "td3"})
    loaded, meta = load_summary(tmp_path / "s.safetensors", expected_fingerprint="abc")
    assert set(loaded) == set(t)
    for k in t:
        assert torch.equal(loaded[k], t[k])
    assert meta["method"] == "td3" and "td3rec_version" in meta
    assert (tmp_path / "s.json").is_file()


def test_other_dataset_is_refused(tmp_path):
    save_summary(tmp_path / "s.safetensors", tensors(), {"dataset_fingerprint": "abc", "dataset": "ml-100k"})
    with pytest.raises(DataError, match="different fingerprint"):
        load_summary(tmp_path / "s.safetensors", expected_fingerprint="xyz")


def test_corrupted_file_is_a_clear_error(tmp_path):
    path = tmp_path / "s.safetensors"
    save_summary(path, tensors(), {"dataset_fingerprint": "abc"})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="corrupted"):
        load_summary(path)


def test_non_finite_summary_is_never_saved(tmp_path):
    t = tensors()
    t["G"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save_summary(tmp_path / "s.safetensors", t, {})
    assert not list(tmp_path.iterdir())
