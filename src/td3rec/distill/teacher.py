"""The teacher: a learner trained on the full data, its trajectory of per-epoch checkpoints, its item
embedding (the summary's item factor V) and its features on the real training examples."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from td3rec.data.sequences import Examples, SequenceDataset
from td3rec.errors import DataError
from td3rec.models.base import SequentialRecommender
from td3rec.training.checkpoint import load_checkpoint, trajectory
from td3rec.training.config import TrainConfig
from td3rec.training.trainer import train_full_data

log = logging.getLogger(__name__)


@dataclass
class Teacher:
    """A trained full-data learner and the checkpoints of its training epochs."""

    model: SequentialRecommender
    model_name: str
    trajectory: list[Path]
    run_dir: Path

    def checkpoints_between(self, first: int, last: int) -> list[Path]:
        """Trajectory checkpoints of epochs ``first..last`` (clamped to what exists; never empty)."""
        chosen = [p for p in self.trajectory if first <= _epoch_of(p) <= last]
        if not chosen:
            chosen = self.trajectory[-1:]
        return chosen


def _epoch_of(path: Path) -> int:
    return int(path.stem.split("_")[-1])


def load_teacher(run_dir: str | Path, dataset: SequenceDataset, device: torch.device) -> Teacher:
    """Load a ``td3rec train`` run folder and check it was trained on ``dataset``."""
    run = Path(run_dir)
    model, meta = load_checkpoint(run / "best.pt", device)
    if meta.get("fingerprint") != dataset.fingerprint():
        raise DataError(f"teacher run {run} was trained on different data than {dataset.name!r} (fingerprint mismatch)")
    steps = trajectory(run)
    if not steps:
        raise DataError(f"teacher run {run} has no per-epoch checkpoints (train it with keep_trajectory=true)")
    return Teacher(model.eval(), meta["model"], steps, run)


def train_teacher(dataset: SequenceDataset, config: TrainConfig, run_dir: Path, progress: bool,
                  device: torch.device) -> Teacher:
    """Train a teacher on the fly into ``run_dir``."""
    log.info("no teacher given: training a full-data %s teacher into %s", config.model, run_dir)
    train_full_data(dataset, config, run_dir=run_dir, progress=progress)
    return load_teacher(run_dir, dataset, device)


@torch.no_grad()
def teacher_features(model: SequentialRecommender, examples: Examples, device: torch.device,
                     batch_size: int = 4096) -> torch.Tensor:
    """The teacher's features (eval mode) on every real example, ``[N, H]`` on ``device``."""
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        batch = examples.subset(slice(start, start + batch_size)).to(device)
        out.append(model.features(batch.inputs, batch.lengths))
    return torch.cat(out)
