"""Registry, cache lookup, checksums and downloads (the network is always faked)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import logging
import re
import zipfile
from pathlib import Path
from urllib.error import URLError

import pytest

import td3rec.data.download as download_module
from td3rec.data import REGISTRY, dataset_stats, list_datasets, load_dataset
from td3rec.data.download import download
from td3rec.data.preprocess import PreprocessConfig
from td3rec.data.registry import DEFAULT_DATA_DIR, cache_dir, locate
from td3rec.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any real network access in these tests is a bug: urlopen fails loudly unless a test replaces it."""

    def refuse(*args, **kwargs):
        raise AssertionError("test tried to use the network")

    monkeypatch.setattr(download_module, "urlopen", refuse)


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def serve(monkeypatch, payloads: dict[str, bytes]) -> list[str]:
    """Make urlopen return ``payloads[url]``; returns the list of requested URLs."""
    requested: list[str] = []

    def fake_urlopen(request, timeout=None):
        url = request.full_url
        requested.append(url)
        return FakeResponse(payloads[url])

    monkeypatch.setattr(download_module, "urlopen", fake_urlopen)
    return requested


def offline(monkeypatch) -> None:
    def fail(request, timeout=None):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download_module, "urlopen", fail)


def _u_data_zip(rows: list[tuple[int, int, int, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
        archive.writestr("ml-100k/README", "fake")
    return buffer.getvalue()


# rows: user, item, rating, timestamp (not in time order, to check the sort uses the 4th column)
U_DATA = [(1, 10, 5, 300), (1, 11, 3, 100), (1, 12, 4, 200), (2, 10, 1, 50), (2, 12, 2, 40), (2, 11, 2, 60)]


def _with_checksum(monkeypatch, name: str, filename: str, checksum: str | None, algorithm: str = "md5") -> None:
    entry = REGISTRY[name]
    files = tuple(dataclasses.replace(f, checksum=checksum, checksum_algorithm=algorithm)
                  if f.filename == filename else f for f in entry.files)
    monkeypatch.setitem(REGISTRY, name, dataclasses.replace(entry, files=files))


# ---------------------------------------------------------------------------------------------- entries


def test_registry_entries_are_complete_and_checksums_well_formed() -> None:
    names = [e.name for e in list_datasets()]
    assert names == ["ml-100k", "ml-1m", "amazon-beauty", "amazon-toys", "amazon-sports"]
    lengths = {"md5": 32, "sha256": 64}
    for entry in list_datasets():
        assert entry.urls, entry.name
        assert entry.files[0].url is None  # local alternatives are looked up first
        for f in entry.files:
            if f.checksum is not None:
                assert re.fullmatch(r"[0-9a-f]+", f.checksum) and len(f.checksum) == lengths[f.checksum_algorithm]
    assert REGISTRY["ml-100k"].default_config() == PreprocessConfig(k_core=5, k_core_mode="single-pass")
    assert REGISTRY["ml-1m"].default_config() == PreprocessConfig(k_core=5, k_core_mode="iterative")
    assert REGISTRY["ml-1m"].files[-1].parser.member == "ml-1m/ratings.dat"


def test_cache_dir_precedence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TD3REC_DATA_DIR", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("TD3REC_DATA_DIR")
    assert cache_dir() == DEFAULT_DATA_DIR.expanduser()


# -------------------------------------------------------------------------------------------- names, paths


@pytest.mark.parametrize("name, suggestion", [("beauty", "amazon-beauty"), ("ml-100", "ml-100k"),
                                              ("ML1M", "ml-1m"), ("amazon-toy", "amazon-toys")])
def test_unknown_name_suggests_close_names(tmp_path: Path, name: str, suggestion: str) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert f"unknown dataset {name!r}" in message and repr(suggestion) in message and "td3rec datasets" in message


def test_missing_file_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"file not found: .*/nope\.csv"):
        load_dataset(str(tmp_path / "nope.csv"))


def test_format_options_are_rejected_for_registry_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only apply to files"):
        load_dataset("ml-100k", data_dir=tmp_path, fmt="csv")


# ----------------------------------------------------------------------------------------- cache lookup


def test_cached_local_alternative_with_wrong_checksum_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError) as info:
        load_dataset("ml-100k", data_dir=tmp_path)
    message = str(info.value)
    assert "checksum mismatch" in message and "ml-100k.inter" in message
    assert "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff" in message


def test_cached_zip_is_verified_and_parsed_by_its_member(monkeypatch, tmp_path: Path) -> None:
    payload = _u_data_zip(U_DATA)
    (tmp_path / "ml-100k.zip").write_bytes(payload)
    _with_checksum(monkeypatch, "ml-100k", "ml-100k.zip", hashlib.md5(payload).hexdigest())
    ds = load_dataset("ml-100k", config=PreprocessConfig(k_core=0), data_dir=tmp_path)
    tokens = {u: [ds.item_tokens[j - 1] for j in seq] for u, seq in zip(ds.user_tokens, ds.sequences)}
    assert tokens == {"1": ["11", "12", "10"], "2": ["12", "10", "11"]}  # ordered by the 4th column
    assert ds.preprocessing["file"] == "ml-100k.zip"
    # same file, published checksum: mismatch
    _with_checksum(monkeypatch, "ml-100k", "ml-100k.zip", "0" * 32)
    with pytest.raises(DataError, match="checksum mismatch .*expected md5 0{32}"):
        load_dataset("ml-100k", data_dir=tmp_path)


def test_local_alternative_is_preferred_over_the_download(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "Toys_and_Games.txt").write_text("1 1 2 3\n2 2 3 1\n")
    (tmp_path / "reviews_Toys_and_Games_5.json.gz").write_bytes(b"not used")
    _with_checksum(monkeypatch, "amazon-toys", "Toys_and_Games.txt", None, "sha256")
    ds = load_dataset("amazon-toys", config=PreprocessConfig(k_core=0), data_dir=tmp_path)
    assert ds.preprocessing["file"] == "Toys_and_Games.txt" and ds.n_interactions == 6


# -------------------------------------------------------------------------------------------- downloads


def test_download_verifies_and_moves_into_the_cache(monkeypatch, tmp_path: Path) -> None:
    payload = _u_data_zip(U_DATA)
    url = REGISTRY["ml-100k"].files[-1].url
    requested = serve(monkeypatch, {url: payload})
    _with_checksum(monkeypatch, "ml-100k", "ml-100k.zip", hashlib.md5(payload).hexdigest())
    ds = load_dataset("ml-100k", config=PreprocessConfig(k_core=0), data_dir=tmp_path / "cache", progress=False)
    assert requested == [url]
    assert (tmp_path / "cache" / "ml-100k.zip").read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["ml-100k.zip"]  # no temporary left
    assert ds.n_users == 2
    # second load: from the cache, no request
    load_dataset("ml-100k", config=PreprocessConfig(k_core=0), data_dir=tmp_path / "cache")
    assert requested == [url]


def test_download_with_wrong_checksum_leaves_nothing(monkeypatch, tmp_path: Path) -> None:
    url = REGISTRY["ml-1m"].files[-1].url
    serve(monkeypatch, {url: b"corrupted payload"})
    with pytest.raises(DataError) as info:
        load_dataset("ml-1m", data_dir=tmp_path, progress=False)
    assert "checksum mismatch" in str(info.value) and "c4d9eecfca2ab87c1945afe126590906" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unverified_download_warns_with_its_sha256(monkeypatch, tmp_path: Path, caplog) -> None:
    lines = [{"reviewerID": f"A{u}", "asin": f"B{i}", "unixReviewTime": 1000 + 10 * n, "helpful": [0, 0]}
             for n, (u, i) in enumerate([(1, 1), (1, 2), (1, 3), (2, 3), (2, 2), (2, 1)])]
    payload = gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode())
    url = REGISTRY["amazon-beauty"].files[-1].url
    serve(monkeypatch, {url: payload})
    with caplog.at_level(logging.WARNING, logger="td3rec.data.download"):
        ds = load_dataset("amazon-beauty", config=PreprocessConfig(k_core=0), data_dir=tmp_path, progress=False)
    assert any("unverified" in r.getMessage() and hashlib.sha256(payload).hexdigest() in r.getMessage()
               for r in caplog.records)
    assert ds.n_interactions == 6 and ds.preprocessing["file"] == "reviews_Beauty_5.json.gz"


def test_offline_without_local_file_names_files_and_folder(monkeypatch, tmp_path: Path) -> None:
    offline(monkeypatch)
    folder = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        load_dataset("amazon-sports", data_dir=folder, progress=False)
    message = str(info.value)
    assert "\n" not in message
    for fragment in ("'amazon-sports'", "Temporary failure in name resolution", "reviews_Sports_and_Outdoors_5.json.gz",
                     "Sports_and_Outdoors.txt", str(folder), "TD3REC_DATA_DIR"):
        assert fragment in message, fragment
    assert not any(folder.glob("*")) if folder.exists() else True


def test_unwritable_cache_still_says_where_to_put_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(DataError) as info:
        load_dataset("ml-1m", data_dir=blocker / "cache", progress=False)
    message = str(info.value)
    assert "cannot write" in message and "place ml-1m.inter" in message and "ml-1m.zip (from https://" in message


def test_download_function_timeout_is_a_data_error(monkeypatch, tmp_path: Path) -> None:
    def slow(request, timeout=None):
        raise TimeoutError("timed out")

    monkeypatch.setattr(download_module, "urlopen", slow)
    with pytest.raises(DataError, match="cannot download https://example.org/x.bin: timed out"):
        download("https://example.org/x.bin", tmp_path / "x.bin", progress=False)
    assert not (tmp_path / "x.bin").exists()


def test_locate_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="downloads are disabled"):
        locate(REGISTRY["ml-1m"], tmp_path, allow_download=False)


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_registry_names_resolve_to_the_shared_files(real_data_dir: Path, real_file) -> None:
    real_file("ml-100k.inter")
    real_file("Beauty.txt")
    ml = load_dataset("ml-100k", data_dir=real_data_dir)  # registry default: single-pass 5-core
    assert (ml.n_users, ml.n_items, ml.n_interactions) == (943, 1349, 99_287)
    assert ml.preprocessing["file"] == "ml-100k.inter" and ml.preprocessing["k_core_mode"] == "single-pass"
    beauty = load_dataset("amazon-beauty", data_dir=real_data_dir)
    stats = dataset_stats(beauty)
    assert (stats["users"], stats["items"], stats["interactions"]) == (22_363, 12_101, 198_502)
    assert stats["sequence_length"]["min"] == 5
    assert stats["density"] == pytest.approx(198_502 / (22_363 * 12_101))
