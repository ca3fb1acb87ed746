"""How large ``td3rec evaluate``'s real-subset baselines are, and the size shown beside every evaluated row.

A real subset is only a fair baseline for a summary of the same size: by default each subset is as large as the
summary it is compared with, n users for n synthetic sequences, each user's last L training items for sequences
of L positions. With several summaries of different sizes, every subset kind is built once per distinct size.
Without a summary the subsets have ``DEFAULT_SUBSET_USERS`` users and the learners' ``max_len`` items.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from td3rec.summary.factors import load_summary_factors
#: users per real subset when no summary gives the size (and ``--n`` is not given)
DEFAULT_SUBSET_USERS = 30


def summary_size(path: str | Path) -> tuple[int, int]:
    """``(n, L)`` of a summary file: its synthetic sequences and their positions (any summary method; the file's
    content is checked as every reader checks it)."""
    queries = load_summary_factors(path).queries
    return int(queries.shape[0]), int(queries.shape[1])


def subset_sizes(summary_sizes: Iterable[tuple[int, int]], n: int | None = None,
                 seq_len: int | None = None) -> list[tuple[int, int | None]]:
    """The ``(n, L)`` of ``td3rec evaluate``'s real subsets: each kind of subset is built once per size.

    The sizes are those of the summaries evaluated (``summary_sizes``, in order, duplicates dropped), with ``n``
    (``--n``) and ``seq_len`` (``--seq-len``) replacing their n or L when given. Without summaries, one size:
    ``n`` or :data:`DEFAULT_SUBSET_USERS` users, ``seq_len`` or ``None`` (the learners' ``max_len``) items.
    """
    sizes = [(n if n is not None else size_n, seq_len if seq_len is not None else size_L)
             for size_n, size_L in summary_sizes]
    if not sizes:
        sizes = [(n if n is not None else DEFAULT_SUBSET_USERS, seq_len)]
    return list(dict.fromkeys(sizes))


def data_size(source) -> dict[str, int]:
    """Size of one kind of training data: ``n`` sequences, the longest one's ``seq_len`` and the ``positions``
    (items or soft item distributions) they hold in all; ``source`` is a soft or hard training source."""
    lengths = source.lengths(torch.arange(len(source)))
    return {"n": len(source), "seq_len": int(lengths.max()), "positions": int(lengths.sum())}


def size_text(row: dict) -> str:
    """``n×L`` of a result row (``n×full`` for the whole data, whose sequences are not cut); ``?`` when the row
    carries no size (rows written before sizes were recorded)."""
    if "n" not in row:
        return "?"
    return f"{row['n']}×{row['seq_len'] if row.get('seq_len') is not None else 'full'}"
