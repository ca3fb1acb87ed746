"""The teacher: a learner trained on the full data, its trajectory of per-epoch checkpoints, its item
embedding (the summary's item factor V) and its features on the real training examples."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from td3rec.data.sequences import Examples, SequenceDataset
from td3rec.errors import ConfigError, DataError
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
        chosen = [p for p in self.trajectory if first <= epoch_of(p) <= last]
        if not chosen:
            chosen = self.trajectory[-1:]
        return chosen


def epoch_of(path: Path) -> int:
    """The epoch number of a trajectory checkpoint file (`epoch_N.pt`)."""
    return int(path.stem.split("_")[-1])


def load_teacher(run_dir: str | Path, dataset: SequenceDataset, device: torch.device) -> Teacher:
    """Load a ``td3rec train`` run folder and check it was trained on ``dataset``."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"teacher run folder {run} does not exist; give the --out folder of a `td3rec train` run")
    if not (run / "best.pt").is_file():
        raise DataError(f"{run} is not a finished `td3rec train` run (no best.pt); train a teacher with "
                        "`td3rec train` (or resume its run) and give its folder")
    if not _finished(run):
        raise DataError(f"teacher run {run} did not finish (its metrics.json does not say \"status\": \"finished\"); "
                        f"continue it with `td3rec train --resume {run}` or give a finished run")
    model, meta = load_checkpoint(run / "best.pt", device)
    if meta.get("fingerprint") != dataset.fingerprint():
        raise DataError(f"teacher run {run} was trained on different data than {dataset.name!r} (fingerprint mismatch)")
    steps = trajectory(run)
    if not steps:
        raise DataError(f"teacher run {run} has no per-epoch checkpoints (train it with keep_trajectory=true)")
    for step in steps:  # every learner start must load, before any work (each is read later, mid-run)
        _, step_meta = load_checkpoint(step, "cpu")
        if step_meta.get("fingerprint") != meta.get("fingerprint") or step_meta["model"] != meta["model"]:
            raise DataError(f"teacher checkpoint {step} belongs to another run (other data or model than "
                            f"{run / 'best.pt'}); the teacher folder is mixed up, train a new teacher")
    return Teacher(model.eval(), meta["model"], steps, run)


def train_teacher(dataset: SequenceDataset, config: TrainConfig, run_dir: Path, progress: bool,
                  device: torch.device, resume: bool = False) -> Teacher:
    """Train a teacher on the fly into ``run_dir``. With ``resume``, a teacher that finished there is
    reused and an interrupted one continues from its checkpoint."""
    if resume and _finished(run_dir):
        log.info("reusing the teacher trained in %s", run_dir)
        return load_teacher(run_dir, dataset, device)
    log.info("no teacher given: training a full-data %s teacher into %s", config.model, run_dir)
    train_full_data(dataset, config, run_dir=run_dir, progress=progress, resume=resume)
    return load_teacher(run_dir, dataset, device)


def match_teachers(teachers: list[Teacher], archs: list[str]) -> list[Teacher]:
    """The teachers of a multi-architecture distillation in the order of ``archs``: exactly one per architecture."""
    by_arch: dict[str, Teacher] = {}
    for teacher in teachers:
        if teacher.model_name in by_arch:
            raise ConfigError(f"two teachers are {teacher.model_name} models ({by_arch[teacher.model_name].run_dir} "
                              f"and {teacher.run_dir}); give one teacher per architecture")
        by_arch[teacher.model_name] = teacher
    missing = [arch for arch in archs if arch not in by_arch]
    extra = [arch for arch in by_arch if arch not in archs]
    if missing or extra:
        raise ConfigError(f"model={','.join(archs)} needs one teacher per architecture: "
                          + "; ".join(part for part in (f"none given for {', '.join(missing)}" if missing else "",
                                                        f"{', '.join(extra)} not distilled through" if extra else "")
                                      if part)
                          + " (give --teacher once per architecture, or none to train them in the run)")
    return [by_arch[arch] for arch in archs]


def _finished(run_dir: Path) -> bool:
    """Whether the ``td3rec train`` run in ``run_dir`` finished (its metrics.json says so)."""
    try:
        return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("status") == "finished"
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


@torch.no_grad()
def teacher_features(model: SequentialRecommender, examples: Examples, device: torch.device,
                     batch_size: int = 4096) -> torch.Tensor:
    """The teacher's features (eval mode) on every real example, ``[N, H]`` on ``device``."""
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        batch = examples.subset(slice(start, start + batch_size)).trimmed().to(device)
        out.append(model.features(batch.inputs, batch.lengths))
    return torch.cat(out)
