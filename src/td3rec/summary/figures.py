"""PNG figures of a summary inspection: entropy per position, popularity profile, top-item heat maps.

Drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, so no display and no global
``pyplot`` state are involved (safe in scripts, tests and servers); each file is written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from td3rec.errors import ConfigError
from td3rec.summary.distributions import SummaryDistributions
from td3rec.summary.inspect import SummaryInspection
from td3rec.utils.atomic import atomic_path

log = logging.getLogger(__name__)

#: file names :func:`write_figures` writes, by figure
FIGURE_FILES = {
    "entropy": "entropy_per_position.png",
    "popularity": "popularity.png",
    "heatmap": "top_items_heatmap.png",
}


def entropy_figure(insp: SummaryInspection, uniform_entropy: float) -> Figure:
    """Mean entropy per position over the synthetic sequences, with the min–max band and the uniform level."""
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = np.arange(1, insp.entropy.shape[1] + 1)
    ax.fill_between(positions, insp.entropy.min(0), insp.entropy.max(0), alpha=0.25, label="min – max over sequences")
    ax.plot(positions, insp.entropy.mean(0), marker="o", markersize=3, label="mean over sequences")
    ax.axhline(uniform_entropy, linestyle="--", color="grey", label=f"uniform (log |I| = {uniform_entropy:.2f})")
    ax.set_xlabel("position")
    ax.set_ylabel("entropy (nats)")
    # near-uniform summaries span ~1e-5 nats: plain tick values, never an offset like "1e-5+7.207"
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set_title("Entropy of the summary's item distribution per position")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def popularity_figure(insp: SummaryInspection, real_counts: np.ndarray | None = None) -> Figure:
    """Item shares ordered by popularity rank; with real counts, summary vs real on the real ranking and a
    per-item scatter."""
    expected = insp.expected_counts / insp.expected_counts.sum()
    if real_counts is None:
        fig = Figure(figsize=(7, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(np.arange(1, len(expected) + 1), np.sort(expected)[::-1], label="summary (expected counts)")
        ax.set_xlabel("item rank by summary expected count")
    else:
        real = real_counts / max(real_counts.sum(), 1.0)
        order = np.argsort(-real_counts, kind="stable")
        fig = Figure(figsize=(12, 4))
        FigureCanvasAgg(fig)
        ax, scatter = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        ranks = np.arange(1, len(order) + 1)
        ax.plot(ranks, real[order], label="real data (interactions)")
        ax.plot(ranks, expected[order], label="summary (expected counts)", alpha=0.8)
        ax.set_xlabel("item rank by real popularity")
        seen = real_counts > 0
        scatter.scatter(real[seen], expected[seen], s=6, alpha=0.5)
        scatter.set_xscale("log")
        scatter.set_yscale("log")
        scatter.set_xlabel("real share of interactions")
        scatter.set_ylabel("summary share of expected counts")
        scatter.set_title("Per item (items seen in the data)")
    ax.set_yscale("log")
    ax.set_ylabel("share")
    ax.set_title("Item popularity profile")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def heatmap_figure(dist: SummaryDistributions, insp: SummaryInspection, sequences: int = 3, items: int = 12) -> Figure:
    """For the first ``sequences`` synthetic sequences: probability of their ``items`` leading items (largest
    summed top-K probability over the sequence's positions) at every position."""
    shown = min(sequences, dist.n_sequences)
    if shown < 1:
        raise ConfigError(f"the heat map needs at least one sequence, got {sequences}")
    fig = Figure(figsize=(max(6.0, 0.18 * dist.seq_len + 3), 3.2 * shown))
    FigureCanvasAgg(fig)
    for row in range(shown):
        ax = fig.add_subplot(shown, 1, row + 1)
        ids = leading_items(insp, row, items)
        probs = dist.item_log_probs(row, torch.as_tensor(ids - 1)).exp().numpy().T  # [items, L]
        image = ax.imshow(probs, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0.0,
                          extent=(0.5, dist.seq_len + 0.5, len(ids) - 0.5, -0.5))
        ax.set_yticks(range(len(ids)))
        ax.set_yticklabels([insp.item_tokens[j - 1] for j in ids], fontsize="x-small")
        ax.set_ylabel("item")
        ax.set_title(f"synthetic sequence {row + 1}: probability of its top items", fontsize="small")
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    ax.set_xlabel("position")
    fig.tight_layout()
    return fig


def leading_items(insp: SummaryInspection, sequence: int, items: int) -> np.ndarray:
    """Internal ids of the ``items`` items with the largest summed top-K probability in one sequence."""
    ids = insp.top_items[sequence].ravel()
    mass = np.bincount(ids, weights=insp.top_probs[sequence].ravel(), minlength=insp.n_items + 1)
    ranked = np.argsort(-mass, kind="stable")
    return ranked[mass[ranked] > 0][:items]


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


def write_figures(dist: SummaryDistributions, insp: SummaryInspection, folder: str | Path,
                  real_counts: np.ndarray | None = None, heatmap_sequences: int = 3) -> list[Path]:
    """Write the three figures of :data:`FIGURE_FILES` into ``folder`` (created); returns their paths."""
    folder = Path(folder)
    figures = {
        "entropy": entropy_figure(insp, dist.uniform_entropy()),
        "popularity": popularity_figure(insp, real_counts),
        "heatmap": heatmap_figure(dist, insp, heatmap_sequences),
    }
    paths = [save_figure(fig, folder / FIGURE_FILES[name]) for name, fig in figures.items()]
    log.info("wrote %d figures to %s", len(paths), folder)
    return paths
