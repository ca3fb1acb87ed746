"""``td3rec datasets``: the registered datasets, their sources, default preprocessing and cache state."""

from __future__ import annotations

import argparse

from td3rec.data.registry import cache_dir, find_cached, list_datasets

NAME = "datasets"
HELP = "list the registered datasets, where they come from and whether they are in the cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="dataset cache folder (default: $TD3REC_DATA_DIR, else ~/.cache/td3rec)")


def run(args: argparse.Namespace) -> int:
    folder = cache_dir(args.data_dir)
    rows = [("NAME", "PREPROCESSING", "CACHED", "SOURCE")]
    for entry in list_datasets():
        found = find_cached(entry, folder)
        cached = found[0].filename if found else "no"
        prep = entry.default_config().describe()
        rows.append((entry.name, prep, cached, " | ".join(entry.urls) or "local files only"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"dataset cache: {folder}{'' if folder.is_dir() else ' (does not exist yet)'}")
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    print("\nfile names looked for in the cache (first found is used):")
    for entry in list_datasets():
        names = " or ".join(f"{f.filename} ({f.note})" if f.note else f.filename for f in entry.files)
        print(f"  {entry.name}: {names}")
    return 0
