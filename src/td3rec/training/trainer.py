"""Full-data training of a learner with early stopping, per-epoch checkpoints and a metrics file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from td3rec.config import dump_yaml
from td3rec.data.sequences import (
    SequenceDataset,
    iterate_batches,
    leave_one_out,
    prefix_examples,
    window_examples,
)
from td3rec.evaluation.evaluator import evaluate
from td3rec.models.registry import build_model
from td3rec.training.checkpoint import save_checkpoint
from td3rec.training.config import TrainConfig
from td3rec.utils.atomic import write_json, write_text
from td3rec.utils.device import resolve_device
from td3rec.utils.seeding import seed_everything

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Outcome of :func:`train_full_data`."""

    best_epoch: int
    valid: dict
    test: dict
    history: list[dict] = field(default_factory=list)
    seconds_per_epoch: float = 0.0
    run_dir: Path | None = None
    model: torch.nn.Module | None = None


def metric_value(metrics: dict, key: str) -> float:
    """Look up ``PROTOCOL:METRIC`` (e.g. ``full:NDCG@10``) in evaluator output."""
    protocol, _, name = key.partition(":")
    return float(metrics[protocol][name])


def train_full_data(
    dataset: SequenceDataset,
    config: TrainConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``config.model`` on every training prefix of ``dataset``; keep the epoch with the best validation
    metric, then test it. With ``run_dir`` the resolved config, per-epoch checkpoints, ``best.pt`` and
    ``metrics.json`` are written there (each file atomically)."""
    config.validate()
    device = resolve_device(config.device)
    run_path = Path(run_dir) if run_dir is not None else None
    generator = seed_everything(config.seed)

    split = leave_one_out(dataset)
    window_mode = config.mode == "window"
    examples = window_examples(split, config.max_len) if window_mode else prefix_examples(split, config.max_len)
    batch_size = config.window_batch_size if window_mode else config.batch_size
    model = build_model(config.model, dataset.n_items, config.max_len, **config.model_options).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    fingerprint = dataset.fingerprint()
    if run_path is not None:
        write_text(run_path / "config.yaml", dump_yaml(config))
        write_json(run_path / "dataset.json", {
            "name": dataset.name, "fingerprint": fingerprint, "users": dataset.n_users,
            "items": dataset.n_items, "interactions": dataset.n_interactions,
            "preprocessing": dataset.preprocessing, "training_examples": len(examples), "mode": config.mode,
        })
    log.info("training %s on %s: %d users, %d items, %d training %s, device %s", config.model, dataset.name,
             dataset.n_users, dataset.n_items, len(examples), "windows" if window_mode else "examples", device)

    history: list[dict] = []
    best_value, best_epoch, best_state, stale = float("-inf"), 0, None, 0
    epoch_seconds: list[float] = []
    n_batches = -(-len(examples) // batch_size)
    for epoch in range(1, config.epochs + 1):
        model.train()
        start = time.perf_counter()
        total = 0.0
        bar = tqdm(iterate_batches(len(examples), batch_size, True, generator), total=n_batches,
                   desc=f"epoch {epoch}", leave=False, disable=None if progress else True)
        for index in bar:
            batch = examples.subset(index).to(device)
            if window_mode:
                loss = model.window_loss(batch.inputs, batch.lengths, batch.targets)
            else:
                loss = model.training_loss(batch.inputs, batch.lengths, batch.targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        epoch_seconds.append(time.perf_counter() - start)
        valid = evaluate(model, split, "valid", config.max_len, config.eval, device)
        value = metric_value(valid, config.valid_metric)
        row = {"epoch": epoch, "loss": total / len(examples), "seconds": epoch_seconds[-1], "valid": valid}
        history.append(row)
        improved = value > best_value
        if improved:
            best_value, best_epoch, stale = value, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        log.info("epoch %d: loss %.4f, valid %s %.4f%s (%.1fs)", epoch, row["loss"], config.valid_metric, value,
                 " *" if improved else "", epoch_seconds[-1])
        if run_path is not None:
            meta = {"epoch": epoch, "fingerprint": fingerprint, "valid": valid}
            if config.keep_trajectory:
                save_checkpoint(run_path / "checkpoints" / f"epoch_{epoch:03d}.pt", model, config.model, **meta)
            if improved:
                save_checkpoint(run_path / "best.pt", model, config.model, **meta)
            write_json(run_path / "metrics.json", {"status": "running", "history": history})
        if stale >= config.patience:
            log.info("early stop: no improvement of %s for %d epochs", config.valid_metric, config.patience)
            break

    model.load_state_dict(best_state)
    valid_best = history[best_epoch - 1]["valid"]
    test = evaluate(model, split, "test", config.max_len, config.eval, device)
    epoch_seconds.sort()
    result = TrainResult(
        best_epoch=best_epoch, valid=valid_best, test=test, history=history,
        seconds_per_epoch=epoch_seconds[len(epoch_seconds) // 2], run_dir=run_path, model=model,
    )
    if run_path is not None:
        write_json(run_path / "metrics.json", {
            "status": "finished", "model": config.model, "dataset": dataset.name, "fingerprint": fingerprint,
            "best_epoch": best_epoch, "epochs_run": len(history), "valid_metric": config.valid_metric,
            "valid": valid_best, "test": test, "median_seconds_per_epoch": result.seconds_per_epoch,
            "history": history,
        })
    return result
