"""Looking inside a summary: top items and entropy per position, catalogue coverage, popularity profile.

One streamed pass over the per-position distributions (:class:`SummaryDistributions`, never ``n × L × |I|``
at once) collects everything: :func:`inspect_distributions`. The report (:func:`inspection_report`) is a
JSON-ready dict; sequences and positions in it count from 1 (sequence 1 is ``syn_0001`` of an export).

Definitions (entropies in nats):

- **entropy** of position ``(a, b)``: ``H = -sum_i p_i log p_i``; at most ``log |I|`` (uniform).
- **coverage** — how many distinct items carry mass:
  ``argmax_items``: items that are the most probable item at one position or more (what an argmax export
  can contain); ``top_k_items``: items in at least one position's top-K list; ``items_above_threshold``:
  items whose largest probability anywhere in the summary exceeds ``threshold`` (default ``1/|I|``, the
  uniform level: the item is favoured at some position); ``effective_items``: ``exp`` of the entropy of
  the summary's marginal item distribution (expected counts normalised), ``|I|`` when the summary uses every
  item equally, 1 when it uses one; ``items_for_90pct_mass``: fewest items whose expected counts add up to
  90 % of the summary's ``n · L`` positions.
- **popularity profile**: the expected count of item ``i`` is ``sum_{a,b} p[a, b, i]`` (what ``n · L``
  sampled interactions would hold on average). Against real data (the preprocessed dataset's interaction
  count per item, matched by raw item id): the Spearman rank correlation over the summary's items, and the
  share of summary mass and of real interactions on the top 10 % most popular real items.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from td3rec.data.sequences import SequenceDataset
from td3rec.errors import ConfigError
from td3rec.summary.distributions import SummaryDistributions
from td3rec.summary.readout import DENSE_MAX_ELEMENTS

log = logging.getLogger(__name__)

#: fraction of the most popular real items the popularity comparison looks at
POPULAR_FRACTION = 0.1
#: share of the summary's mass for ``items_for_90pct_mass``
MASS_SHARE = 0.9


@dataclass
class SummaryInspection:
    """What one pass over the distributions collects (internal item ids are ``1 .. |I|``).

    Attributes:
        entropy: ``[n, L]`` entropy of every position (nats).
        top_items: ``[n, L, K]`` internal ids of the K most probable items, most probable first.
        top_probs: ``[n, L, K]`` their probabilities.
        item_max_prob: ``[|I|]`` largest probability of each item over all positions.
        expected_counts: ``[|I|]`` sum of each item's probabilities over all positions.
        item_tokens: raw item id of internal item ``j`` at index ``j - 1``.
    """

    entropy: np.ndarray
    top_items: np.ndarray
    top_probs: np.ndarray
    item_max_prob: np.ndarray
    expected_counts: np.ndarray
    item_tokens: list[str]

    @property
    def n_items(self) -> int:
        return len(self.item_tokens)

    @property
    def argmax(self) -> np.ndarray:
        """``[n, L]`` the most probable internal item id at every position."""
        return self.top_items[..., 0]


def inspect_distributions(dist: SummaryDistributions, top_k: int = 10,
                          max_elements: int = DENSE_MAX_ELEMENTS) -> SummaryInspection:
    """Entropy, top-``top_k`` items, per-item maximum and expected count, in one streamed pass.

    ``top_k`` larger than the catalogue is cut to ``|I|``.
    """
    if top_k < 1:
        raise ConfigError(f"--top must be positive, got {top_k}")
    k = min(top_k, dist.n_items)
    n, length = dist.n_sequences, dist.seq_len
    entropy = np.zeros((n, length))
    top_items = np.zeros((n, length, k), dtype=np.int64)
    top_probs = np.zeros((n, length, k))
    item_max = torch.zeros(dist.n_items, dtype=torch.float64)
    expected = torch.zeros(dist.n_items, dtype=torch.float64)
    log.debug("inspecting %d x %d positions over %d items, %d position(s) per block", n, length, dist.n_items,
              dist.positions_per_block(max_elements))
    for block in dist.blocks(max_elements):
        probs = block.probs
        rows = slice(block.start, block.start + probs.shape[0])
        entropy[block.sequence, rows] = torch.special.entr(probs).sum(-1).numpy()  # (0 log 0 = 0 off a support)
        values, index = probs.topk(k, dim=-1)
        top_items[block.sequence, rows] = index.numpy() + 1
        top_probs[block.sequence, rows] = values.numpy()
        item_max = torch.maximum(item_max, probs.amax(0))
        expected += probs.sum(0)
    return SummaryInspection(entropy, top_items, top_probs, item_max.numpy(), expected.numpy(), list(dist.item_tokens))


# -- measures ----------------------------------------------------------------------------------------
def coverage(insp: SummaryInspection, threshold: float | None = None) -> dict:
    """Catalogue coverage (see the module docstring); ``threshold`` defaults to ``1 / |I|``."""
    n_items = insp.n_items
    if threshold is None:
        threshold = 1.0 / n_items
    if not 0 <= threshold < 1:
        raise ConfigError(f"--threshold must be in [0, 1), got {threshold}")
    shares = np.sort(insp.expected_counts)[::-1] / insp.expected_counts.sum()
    argmax_items = len(np.unique(insp.argmax))
    above = int((insp.item_max_prob > threshold).sum())
    return {
        "n_items": n_items,
        "argmax_items": argmax_items,
        "argmax_fraction": argmax_items / n_items,
        "top_k": int(insp.top_items.shape[-1]),
        "top_k_items": int(len(np.unique(insp.top_items))),
        "threshold": float(threshold),
        "items_above_threshold": above,
        "above_threshold_fraction": above / n_items,
        "effective_items": float(math.exp(_entropy(shares))),
        "items_for_90pct_mass": int(min(np.searchsorted(np.cumsum(shares), MASS_SHARE) + 1, n_items)),
    }


def real_item_counts(dataset: SequenceDataset, item_tokens: list[str]) -> tuple[np.ndarray, dict]:
    """Interactions per summary item in ``dataset`` (matched by raw item id), and how well the ids matched."""
    popularity = dataset.item_popularity()[1:]
    by_token = dict(zip((str(t) for t in dataset.item_tokens), popularity.tolist()))
    counts = np.array([by_token.get(t, 0) for t in item_tokens], dtype=np.float64)
    summary_tokens = set(item_tokens)
    info = {
        "dataset": dataset.name,
        "summary_items_not_in_data": sum(t not in by_token for t in item_tokens),
        "data_items_not_in_summary": sum(t not in summary_tokens for t in by_token),
    }
    return counts, info


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (average ranks for ties); ``None`` when either side is constant."""
    rx = pd.Series(x).rank(method="average").to_numpy()
    ry = pd.Series(y).rank(method="average").to_numpy()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else None


def popular_items(counts: np.ndarray, fraction: float = POPULAR_FRACTION) -> np.ndarray:
    """0-based indices of the ``ceil(fraction · |I|)`` items with the highest ``counts`` (ties: lower index)."""
    top = max(1, math.ceil(fraction * len(counts)))
    return np.argsort(-counts, kind="stable")[:top]


def popularity_profile(insp: SummaryInspection, real_counts: np.ndarray | None = None, top: int = 10) -> dict:
    """The summary's expected counts (top ``top`` items, concentration) and, with ``real_counts``, the
    comparison with the real data's item popularity."""
    expected = insp.expected_counts
    total = float(expected.sum())
    order = np.argsort(-expected, kind="stable")[:top]
    own_top = popular_items(expected)
    profile: dict = {
        "expected_interactions": total,
        "top_items": [{"item": insp.item_tokens[i], "expected_count": float(expected[i])} for i in order],
        "top10pct_share_of_summary_by_summary": float(expected[own_top].sum() / total),
    }
    if real_counts is not None:
        popular = popular_items(real_counts)
        real_total = float(real_counts.sum())
        profile["real"] = {
            "interactions": real_total,
            "spearman": spearman(expected, real_counts),
            "popular_items": int(len(popular)),
            "summary_share_on_popular": float(expected[popular].sum() / total),
            "real_share_on_popular": float(real_counts[popular].sum() / real_total) if real_total > 0 else None,
        }
    return profile


def inspection_report(dist: SummaryDistributions, insp: SummaryInspection, threshold: float | None = None,
                      real_counts: np.ndarray | None = None, real_info: dict | None = None) -> dict:
    """Everything ``td3rec inspect`` reports, JSON-ready (sequences and positions count from 1)."""
    uniform = dist.uniform_entropy()
    per_position = insp.entropy.mean(axis=0)
    positions = [
        {"sequence": a + 1, "position": b + 1, "entropy": float(insp.entropy[a, b]),
         "top": [{"item": insp.item_tokens[j - 1], "prob": float(p)}
                 for j, p in zip(insp.top_items[a, b].tolist(), insp.top_probs[a, b].tolist())]}
        for a in range(dist.n_sequences) for b in range(dist.seq_len)
    ]
    popularity = popularity_profile(insp, real_counts)
    if real_info is not None and "real" in popularity:
        popularity["real"].update(real_info)
    return {
        "summary": dist.source,
        "dataset": dist.metadata.get("dataset"),
        "n_sequences": dist.n_sequences,
        "seq_len": dist.seq_len,
        "n_items": dist.n_items,
        "entropy": {
            "mean": float(insp.entropy.mean()), "min": float(insp.entropy.min()), "max": float(insp.entropy.max()),
            "uniform": uniform, "mean_per_position": [float(v) for v in per_position],
        },
        "coverage": coverage(insp, threshold),
        "popularity": popularity,
        "positions": positions,
    }


def format_report(report: dict, positions: bool = False) -> str:
    """Human-readable form of :func:`inspection_report`: the overview first (with the figure files when the
    report has them), then, with ``positions``, one line per synthetic sequence and position (entropy and top
    items)."""
    ent, cov, pop = report["entropy"], report["coverage"], report["popularity"]
    lines = [
        f"summary   {report['summary']}: {report['n_sequences']} sequences x {report['seq_len']} positions over "
        f"{report['n_items']:,} items" + (f" (distilled from {report['dataset']})" if report.get("dataset") else ""),
        f"entropy   mean {ent['mean']:.3f}, min {ent['min']:.3f}, max {ent['max']:.3f} nats (uniform {ent['uniform']:.3f})",
        f"coverage  argmax {cov['argmax_items']:,} items ({cov['argmax_fraction']:.1%}), top-{cov['top_k']} "
        f"{cov['top_k_items']:,}, max prob > {cov['threshold']:.3g}: {cov['items_above_threshold']:,} "
        f"({cov['above_threshold_fraction']:.1%}), effective {cov['effective_items']:,.1f}, "
        f"90% of mass on {cov['items_for_90pct_mass']:,}",
        "popular   " + ", ".join(f"{t['item']} ({t['expected_count']:.2f})" for t in pop["top_items"]),
        f"          top 10% of items by expected count hold {pop['top10pct_share_of_summary_by_summary']:.1%} of the mass",
    ]
    real = pop.get("real")
    if real:
        rho = "n/a" if real["spearman"] is None else f"{real['spearman']:.3f}"
        real_share = "n/a" if real["real_share_on_popular"] is None else f"{real['real_share_on_popular']:.1%}"
        lines.append(f"vs real   {real.get('dataset', 'data')}: Spearman {rho}; the {real['popular_items']:,} most popular "
                     f"real items hold {real['summary_share_on_popular']:.1%} of summary mass, {real_share} of real "
                     "interactions")
    if report.get("figures"):
        lines.append("figures   " + ", ".join(report["figures"]))
    if positions:
        lines += ["", f"{'seq':>4} {'pos':>4} {'entropy':>8}  top items (probability)"]
        for row in report["positions"]:
            tops = "  ".join(f"{t['item']} ({t['prob']:.3f})" for t in row["top"])
            lines.append(f"{row['sequence']:>4} {row['position']:>4} {row['entropy']:>8.3f}  {tops}")
    return "\n".join(lines)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())
