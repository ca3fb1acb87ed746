"""Hard synthetic interaction sequences from a soft summary, written for other libraries.

A TD3 summary is a distribution over items at every position of ``n`` synthetic sequences of length ``L``.
Other libraries train on hard interactions, so export turns it into item sequences:

``argmax``
    the most probable item at every position: ``n`` sequences of ``L`` items.
``sample``
    ``K`` sequences per synthetic sequence, each position drawn independently from its distribution:
    ``n · K`` sequences. Draws are by inverse CDF from uniforms ``numpy.random.default_rng(seed).random((n, K,
    L))``, so they depend only on the seed, not on how positions are blocked for memory.

Distributions are streamed one block of positions at a time (:class:`SummaryDistributions`), so the
``n × L × |I|`` tensor is never built. Items are written as their **raw** ids (the summary's ``item_tokens``),
synthetic users as ``syn_0001`` (argmax) or ``syn_0001_01`` (sample 1 of sequence 1), and timestamps as the
positions ``1 .. L`` (only their order means something). Formats:

- ``recbole``: RecBole atomic ``.inter``, tab separated, header ``user_id:token item_id:token timestamp:float``;
- ``csv``: ``user_id,item_id,timestamp`` with a header;
- ``txt``: one user per line, ``user item item ...`` in order (the S3Rec-style ``Beauty.txt`` layout).

Every format loads back through :func:`td3rec.data.readers.read_interactions` with the same sequences.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from td3rec.config import SEED_RANGE
from td3rec.errors import ConfigError, DataError
from td3rec.summary.distributions import SummaryDistributions
from td3rec.summary.readout import DENSE_MAX_ELEMENTS
from td3rec.utils.atomic import write_text
from td3rec.utils.memory import check_memory
from td3rec.utils.output_guard import check_output

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("recbole", "csv", "txt")
EXPORT_MODES = ("argmax", "sample")
#: file suffix td3rec's readers detect each format by
FORMAT_SUFFIX = {"recbole": ".inter", "csv": ".csv", "txt": ".txt"}
#: characters an item token may not contain in each format (CSV quotes what it needs)
_FORBIDDEN = {"recbole": re.compile(r"[\t\r\n]"), "txt": re.compile(r"\s"), "csv": re.compile(r"[\r\n]")}


@dataclass
class ExportedSequences:
    """Exported hard sequences.

    Attributes:
        users: synthetic user id of each row.
        origin: index ``a`` of the synthetic sequence each row comes from.
        items: ``[rows, L]`` internal item ids ``1 .. |I|``.
        item_tokens: raw item id of internal item ``j`` at index ``j - 1``.
    """

    users: list[str]
    origin: np.ndarray
    items: np.ndarray
    item_tokens: list[str]

    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_interactions(self) -> int:
        return int(self.items.size)

    def token_sequences(self) -> dict[str, list[str]]:
        """``{user: [raw item id, ...]}`` in order."""
        return {user: [self.item_tokens[j - 1] for j in row] for user, row in zip(self.users, self.items.tolist())}


# -- hard sequences ----------------------------------------------------------------------------------
def argmax_items(dist: SummaryDistributions, max_elements: int = DENSE_MAX_ELEMENTS) -> np.ndarray:
    """The most probable internal item id (``1 .. |I|``) at every position: ``[n, L]``.

    The argmax of the logits ``W[a, b] · V^T`` (the softmax keeps the order); ties go to the lowest id.
    """
    out = np.zeros((dist.n_sequences, dist.seq_len), dtype=np.int64)
    for block in dist.blocks(max_elements):
        out[block.sequence, block.start : block.start + block.log_probs.shape[0]] = block.log_probs.argmax(-1).numpy() + 1
    return out


def sample_items(dist: SummaryDistributions, samples: int, seed: int = 0,
                 max_elements: int = DENSE_MAX_ELEMENTS) -> np.ndarray:
    """``samples`` independent draws per synthetic sequence: ``[n, samples, L]`` internal item ids.

    Position ``b`` of draw ``k`` of sequence ``a`` is the item where the CDF of ``p[a, b]`` first exceeds
    the uniform ``u[a, k, b]`` (see the module docstring), so an item of probability 0 is never drawn.
    """
    if samples < 1:
        raise ConfigError(f"--samples must be a positive number of draws per synthetic sequence, got {samples}")
    uniforms = torch.from_numpy(np.random.default_rng(seed).random((dist.n_sequences, samples, dist.seq_len)))
    out = np.zeros((dist.n_sequences, samples, dist.seq_len), dtype=np.int64)
    for block in dist.blocks(max_elements):
        cdf = block.probs.cumsum(dim=-1)  # [m, I]
        stop = block.start + cdf.shape[0]
        u = uniforms[block.sequence, :, block.start : stop].T.contiguous() * cdf[:, -1:]  # [m, K], scaled to the total
        index = torch.searchsorted(cdf, u, right=True).clamp_(max=dist.n_items - 1)
        out[block.sequence, :, block.start : stop] = index.T.numpy() + 1
    return out


def hard_sequences(dist: SummaryDistributions, mode: str = "argmax", samples: int = 1, seed: int = 0,
                   max_elements: int = DENSE_MAX_ELEMENTS) -> ExportedSequences:
    """The summary as hard sequences by ``mode`` (``argmax`` or ``sample``; see the module docstring)."""
    width = max(4, len(str(dist.n_sequences)))
    if mode == "argmax":
        items = argmax_items(dist, max_elements)
        users = [f"syn_{a + 1:0{width}d}" for a in range(dist.n_sequences)]
        origin = np.arange(dist.n_sequences)
    elif mode == "sample":
        drawn = sample_items(dist, samples, seed, max_elements)
        items = drawn.reshape(-1, dist.seq_len)
        k_width = max(2, len(str(samples)))
        users = [f"syn_{a + 1:0{width}d}_{k + 1:0{k_width}d}" for a in range(dist.n_sequences) for k in range(samples)]
        origin = np.repeat(np.arange(dist.n_sequences), samples)
    else:
        raise ConfigError(f"unknown export mode {mode!r}; use one of {', '.join(EXPORT_MODES)}")
    return ExportedSequences(users, origin, items, list(dist.item_tokens))


# -- files -------------------------------------------------------------------------------------------
def format_sequences(seqs: ExportedSequences, fmt: str) -> str:
    """The text of an export file in ``fmt`` (``recbole``, ``csv`` or ``txt``)."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    _check_tokens(seqs, fmt)
    tokens = seqs.token_sequences()
    if fmt == "txt":
        return "".join(f"{user} {' '.join(items)}\n" for user, items in tokens.items())
    if fmt == "recbole":
        lines = ["user_id:token\titem_id:token\ttimestamp:float\n"]
        for user, items in tokens.items():
            lines.extend(f"{user}\t{item}\t{t}\n" for t, item in enumerate(items, start=1))
        return "".join(lines)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user_id", "item_id", "timestamp"])
    for user, items in tokens.items():
        writer.writerows([user, item, t] for t, item in enumerate(items, start=1))
    return buffer.getvalue()


def check_output_file(path: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Refuse an output path that is a folder, one of the command's ``inputs`` (the summary, the dataset ...) or
    inside one, a name td3rec writes in one of its folders, or an existing file without ``overwrite`` (before any
    work; the output guard, :func:`td3rec.utils.output_guard.check_output`)."""
    return check_output(path, "--out", [("", p) for p in inputs], overwrite=overwrite)


def write_sequences(seqs: ExportedSequences, path: str | Path, fmt: str) -> Path:
    """Write ``seqs`` to ``path`` in ``fmt`` atomically (a crash leaves no half-written file)."""
    path = Path(path)
    text = format_sequences(seqs, fmt)
    if path.suffix.lower() != FORMAT_SUFFIX[fmt]:
        log.warning("%s: td3rec and RecBole detect the format from the suffix; %s files usually end in %s "
                    "(read this one with --format %s)", path, fmt, FORMAT_SUFFIX[fmt],
                    {"recbole": "atomic", "csv": "csv", "txt": "sequence"}[fmt])
    write_text(path, text)
    return path


def export_summary(summary: str | Path | SummaryDistributions, out: str | Path, fmt: str = "recbole",
                   mode: str = "argmax", samples: int = 1, seed: int = 0, overwrite: bool = False,
                   max_elements: int = DENSE_MAX_ELEMENTS) -> ExportedSequences:
    """Load ``summary`` (a file or loaded distributions), turn it into hard sequences and write them to ``out``.

    Settings and the output path are checked before the summary is read.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    if mode not in EXPORT_MODES:
        raise ConfigError(f"unknown export mode {mode!r}; use one of {', '.join(EXPORT_MODES)}")
    if samples < 1:
        raise ConfigError(f"--samples must be a positive number of draws per synthetic sequence, got {samples}")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ConfigError(f"--seed must be in {SEED_RANGE[0]} .. {SEED_RANGE[1]}, got {seed}")
    check_output_file(out, overwrite, [] if isinstance(summary, SummaryDistributions) else [summary])
    dist = summary if isinstance(summary, SummaryDistributions) else SummaryDistributions.from_file(summary)
    if mode == "sample":  # the uniforms and the drawn ids, both [n, samples, L] (8 bytes each), and the text
        check_memory(dist.n_sequences * samples * dist.seq_len * 40, f"--samples {samples}",
                     "draw fewer samples per synthetic sequence")
    seqs = hard_sequences(dist, mode, samples, seed, max_elements)
    write_sequences(seqs, out, fmt)
    log.debug("exported %d synthetic sequences (%d interactions, %d distinct items) from %s to %s", len(seqs),
             seqs.n_interactions, len(np.unique(seqs.items)), dist.source, out)
    return seqs


def _check_tokens(seqs: ExportedSequences, fmt: str) -> None:
    used = np.unique(seqs.items)
    bad = next((seqs.item_tokens[j - 1] for j in used if _FORBIDDEN[fmt].search(seqs.item_tokens[j - 1])), None)
    if bad is not None:
        other = "csv" if fmt != "csv" else "recbole"
        raise DataError(f"item id {bad!r} contains a separator that the {fmt} format cannot hold; "
                        f"export with --format {other}")
