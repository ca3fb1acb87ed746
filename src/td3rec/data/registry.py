"""The dataset registry: where each benchmark comes from, how to check and parse it, how to preprocess it.

A dataset is found in the cache folder (``data_dir`` argument, else ``$TD3REC_DATA_DIR``, else
``~/.cache/td3rec``), which holds the files flat, under the names listed here. Lookup order for a name:
each of its files already in the cache, in the order listed (checksum verified when one is known; a
mismatch is an error, never silently ignored), else a download of its first downloadable file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from td3rec.data.download import CacheNotWritable, DownloadFailed, download, verify_checksum
from td3rec.data.preprocess import PreprocessConfig
from td3rec.errors import DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "TD3REC_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/td3rec")


@dataclass(frozen=True)
class Parser:
    """How to read a file: format, column mapping (names or 0-based positions) and zip archive member."""

    fmt: str
    columns: Mapping[str, str | int] = field(default_factory=lambda: MappingProxyType({}))
    member: str | None = None


@dataclass(frozen=True)
class DataFile:
    """One file that holds a dataset.

    Attributes:
        filename: its name in the cache folder.
        parser: how to read it.
        url: where to download it; None for local alternatives that must be placed by hand.
        checksum: hex digest of the file, None when no trustworthy published value is known.
        checksum_algorithm: ``sha256``, or ``md5`` where only that is published.
        note: what the file is (shown in messages and ``td3rec datasets``).
    """

    filename: str
    parser: Parser
    url: str | None = None
    checksum: str | None = None
    checksum_algorithm: str = "sha256"
    note: str = ""


@dataclass(frozen=True)
class DatasetEntry:
    """A named benchmark dataset.

    Attributes:
        name: registry name (``td3rec stats NAME``).
        description: one line about what it is.
        files: files that hold it, in lookup order (local alternatives, then downloads).
        k_core, k_core_mode: its default preprocessing (see :class:`PreprocessConfig`).
        citation: whom to cite.
    """

    name: str
    description: str
    files: tuple[DataFile, ...]
    k_core: int = 5
    k_core_mode: str = "iterative"
    citation: str = ""

    def default_config(self) -> PreprocessConfig:
        """A fresh :class:`PreprocessConfig` with this dataset's default preprocessing."""
        return PreprocessConfig(k_core=self.k_core, k_core_mode=self.k_core_mode)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(f.url for f in self.files if f.url)


_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_AMAZON_2014 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
_MOVIELENS_CITATION = "Harper & Konstan, The MovieLens Datasets: History and Context, TiiS 2015"
_AMAZON_CITATION = ("He & McAuley, Ups and Downs, WWW 2016; McAuley et al., Image-based Recommendations on "
                    "Styles and Substitutes, SIGIR 2015")
_AMAZON_JSON = Parser("jsonl", MappingProxyType({"user": "reviewerID", "item": "asin", "time": "unixReviewTime"}))


def _amazon(name: str, category: str, local: str, local_sha256: str | None) -> DatasetEntry:
    return DatasetEntry(
        name=name,
        description=f"Amazon {category.replace('_', ' ')} reviews (McAuley 2014), 5-core",
        files=(
            DataFile(local, Parser("sequence"), checksum=local_sha256,
                     note="S3Rec/ICLRec one-user-per-line file, already 5-core"),
            DataFile(f"reviews_{category}_5.json.gz", _AMAZON_JSON, url=f"{_AMAZON_2014}reviews_{category}_5.json.gz",
                     note="McAuley 2014 5-core reviews, JSON lines"),
        ),
        citation=_AMAZON_CITATION,
    )


#: every registered dataset, by name
REGISTRY: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            name="ml-100k",
            description="MovieLens 100K ratings (943 users, 1,682 movies, 100,000 ratings)",
            files=(
                DataFile("ml-100k.inter", Parser("atomic"),
                         checksum="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                         note="RecBole atomic file"),
                DataFile("ml-100k.zip", Parser("pairs", MappingProxyType({"user": 0, "item": 1, "time": 3}),
                                               member="ml-100k/u.data"),
                         url=_GROUPLENS + "ml-100k.zip", checksum="0e33842e24a9c977be4e0107933c0723",
                         checksum_algorithm="md5", note="GroupLens archive, member u.data"),
            ),
            k_core=5,
            k_core_mode="single-pass",  # the TD3 reference setup: 943 users, 1,349 items, 99,287 interactions
            citation=_MOVIELENS_CITATION,
        ),
        DatasetEntry(
            name="ml-1m",
            description="MovieLens 1M ratings (6,040 users, 3,706 movies, 1,000,209 ratings)",
            files=(
                DataFile("ml-1m.inter", Parser("atomic"), note="RecBole atomic file"),
                DataFile("ml-1m.zip", Parser("pairs", MappingProxyType({"user": 0, "item": 1, "time": 3}),
                                             member="ml-1m/ratings.dat"),
                         url=_GROUPLENS + "ml-1m.zip", checksum="c4d9eecfca2ab87c1945afe126590906",
                         checksum_algorithm="md5", note="GroupLens archive, member ratings.dat"),
            ),
            citation=_MOVIELENS_CITATION,
        ),
        _amazon("amazon-beauty", "Beauty", "Beauty.txt",
                "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"),
        _amazon("amazon-toys", "Toys_and_Games", "Toys_and_Games.txt",
                "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f"),
        _amazon("amazon-sports", "Sports_and_Outdoors", "Sports_and_Outdoors.txt", None),
    )
}


def list_datasets() -> list[DatasetEntry]:
    """Every registered dataset, in registry order."""
    return list(REGISTRY.values())


def cache_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The dataset cache folder: ``data_dir``, else ``$TD3REC_DATA_DIR``, else ``~/.cache/td3rec``."""
    chosen = data_dir if data_dir else os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def get_entry(name: str) -> DatasetEntry:
    """The registry entry for ``name``; an unknown name is a DataError that suggests close names."""
    if name in REGISTRY:
        return REGISTRY[name]
    lowered = name.lower()
    if lowered in REGISTRY:
        return REGISTRY[lowered]
    raise DataError(unknown_name_message(name))


def unknown_name_message(name: str) -> str:
    """``unknown dataset 'x'; did you mean ...?`` with the known names."""
    names = list(REGISTRY)
    close = get_close_matches(name.lower(), names, n=3, cutoff=0.5)
    close += [n for n in names if name.lower() in n and n not in close]
    hint = f"did you mean {' or '.join(repr(c) for c in close[:3])}? " if close else ""
    return (f"unknown dataset {name!r} and no such file; {hint}known datasets: {', '.join(names)} "
            "(`td3rec datasets` lists them), or give the path of an interaction file")


def find_cached(entry: DatasetEntry, data_dir: str | os.PathLike | None = None) -> tuple[DataFile, Path] | None:
    """The first of the entry's files present in the cache (not verified), or None."""
    folder = cache_dir(data_dir)
    for data_file in entry.files:
        path = folder / data_file.filename
        if path.is_file():
            return data_file, path
    return None


def locate(entry: DatasetEntry, data_dir: str | os.PathLike | None = None, allow_download: bool = True,
           progress: bool = True) -> tuple[DataFile, Path]:
    """The verified local file of a dataset, downloading it into the cache when none is there.

    Raises DataError on a checksum mismatch, and when nothing is cached and the download fails: the
    message names the files to place by hand and the folder to place them in.
    """
    folder = cache_dir(data_dir)
    found = find_cached(entry, folder)
    if found is not None:
        data_file, path = found
        if verify_checksum(path, data_file.checksum, data_file.checksum_algorithm):
            log.debug("%s: using %s (%s verified)", entry.name, path, data_file.checksum_algorithm)
        else:
            log.debug("%s: using %s (no known checksum to verify)", entry.name, path)
        return data_file, path
    failure = "downloads are disabled"
    if allow_download:
        for data_file in entry.files:
            if not data_file.url:
                continue
            log.info("%s: downloading %s into %s", entry.name, data_file.url, folder)
            try:
                return data_file, download(data_file.url, folder / data_file.filename, data_file.checksum,
                                           data_file.checksum_algorithm, progress=progress)
            except (DownloadFailed, CacheNotWritable) as err:
                failure = str(err)
    raise DataError(missing_message(entry, folder, failure))


def missing_message(entry: DatasetEntry, folder: Path, reason: str) -> str:
    """One line: the dataset is missing, why, and which file(s) to put where."""
    options = []
    for data_file in entry.files:
        origin = f"from {data_file.url}" if data_file.url else data_file.note or "local copy"
        options.append(f"{data_file.filename} ({origin})")
    return (f"dataset {entry.name!r} is not in the cache and could not be fetched ({reason}); place "
            f"{' or '.join(options)} in {folder} (or set {DATA_DIR_ENV} / --data-dir to a folder that has it)")
