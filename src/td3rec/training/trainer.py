"""Full-data training of a learner with early stopping, per-epoch checkpoints and a metrics file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from td3rec.config import dump_yaml, to_dict
from td3rec.data.sequences import SequenceDataset, leave_one_out, prefix_examples, window_examples
from td3rec.errors import ConfigError, DataError, DivergedError
from td3rec.evaluation.evaluator import evaluate
from td3rec.models.registry import build_model
from td3rec.training.checkpoint import save_checkpoint
from td3rec.training.config import TrainConfig
from td3rec.training.progress import TrainProgress
from td3rec.utils.atomic import write_json, write_text
from td3rec.utils.device import resolve_device
from td3rec.utils.numerics import NonFiniteGuard
from td3rec.utils.rng import capture_rng, restore_rng
from td3rec.utils.run_state import RESUME_FILE, load_run_state, save_run_state
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
    resume: bool = False,
) -> TrainResult:
    """Train ``config.model`` on every training prefix of ``dataset``; keep the epoch with the best validation
    metric, then test it. With ``run_dir`` the resolved config, per-epoch checkpoints, ``best.pt``,
    ``metrics.json`` and the resumable checkpoint ``resume.pt`` are written there (each file atomically).
    With ``resume``, continue from ``run_dir``'s ``resume.pt`` when there is one (else start over there)."""
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
    state = TrainProgress()
    checkpoint = run_path / RESUME_FILE if run_path is not None else None
    if resume and checkpoint is not None and checkpoint.is_file():
        state = _restore(checkpoint, config, fingerprint, model, optimizer, generator, device)
        log.info("resuming %s at epoch %d (%d batches of it done)", run_path, state.epoch, state.position)
    elif run_path is not None:
        if resume:
            log.warning("%s has no resume checkpoint yet (stopped before the first one): starting over", run_path)
        write_text(run_path / "config.yaml", dump_yaml(config))
        write_json(run_path / "dataset.json", {
            "name": dataset.name, "fingerprint": fingerprint, "users": dataset.n_users,
            "items": dataset.n_items, "interactions": dataset.n_interactions,
            "preprocessing": dataset.preprocessing, "training_examples": len(examples), "mode": config.mode,
        })
    log.info("training %s on %s: %d users, %d items, %d training %s, device %s", config.model, dataset.name,
             dataset.n_users, dataset.n_items, len(examples), "windows" if window_mode else "examples", device)

    guard = NonFiniteGuard(config.max_nonfinite_steps, state.skipped, state.nonfinite_streak)

    def save_progress() -> None:
        if checkpoint is None:
            return
        state.skipped, state.nonfinite_streak = guard.total, guard.streak
        save_run_state(checkpoint, "train", {
            "config": to_dict(config), "fingerprint": fingerprint,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "rng": capture_rng(generator, cuda=device.type == "cuda"),
            "progress": state.to_payload(),
        })

    n_batches = -(-len(examples) // batch_size)
    while not state.done:
        epoch = state.epoch
        model.train()
        start = time.perf_counter() - state.epoch_elapsed
        if state.order is None:
            state.order, state.position, state.loss_sum = torch.randperm(len(examples), generator=generator), 0, 0.0
        bar = tqdm(total=n_batches, initial=state.position, desc=f"epoch {epoch}", leave=False,
                   disable=None if progress else True)
        while state.position < n_batches:
            index = state.order[state.position * batch_size : (state.position + 1) * batch_size]
            batch = examples.subset(index).trimmed().to(device)
            if window_mode:
                loss = model.window_loss(batch.inputs, batch.lengths, batch.targets)
            else:
                loss = model.training_loss(batch.inputs, batch.lengths, batch.targets)
            optimizer.zero_grad(set_to_none=True)
            if guard.check(loss):
                loss.backward()
                optimizer.step()
                state.loss_sum += float(loss.detach()) * len(index)
            else:
                log.warning("epoch %d, step %d: non-finite training loss, update skipped (%d in a row, %d in all)",
                            epoch, state.steps + 1, guard.streak, guard.total)
            state.steps += 1
            state.position += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if guard.exceeded:
                _stop_diverged(run_path, guard, state)
            if config.checkpoint_every and state.steps % config.checkpoint_every == 0:
                state.epoch_elapsed = time.perf_counter() - start
                save_progress()
        bar.close()
        state.epoch_seconds.append(time.perf_counter() - start)
        valid = evaluate(model, split, "valid", config.max_len, config.eval, device)
        value = metric_value(valid, config.valid_metric)
        row = {"epoch": epoch, "loss": state.loss_sum / len(examples), "seconds": state.epoch_seconds[-1],
               "valid": valid}
        state.history.append(row)
        improved = value > state.best_value
        if improved:
            state.best_value, state.best_epoch, state.stale = value, epoch, 0
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state.stale += 1
        log.info("epoch %d: loss %.4f, valid %s %.4f%s (%.1fs)", epoch, row["loss"], config.valid_metric, value,
                 " *" if improved else "", state.epoch_seconds[-1])
        if run_path is not None:
            meta = {"epoch": epoch, "fingerprint": fingerprint, "valid": valid}
            if config.keep_trajectory:
                save_checkpoint(run_path / "checkpoints" / f"epoch_{epoch:03d}.pt", model, config.model, **meta)
            if improved:
                save_checkpoint(run_path / "best.pt", model, config.model, **meta)
            write_json(run_path / "metrics.json", {"status": "running", "history": state.history,
                                                   "skipped_steps": guard.total})
        if state.stale >= config.patience:
            log.info("early stop: no improvement of %s for %d epochs", config.valid_metric, config.patience)
        state.done = state.stale >= config.patience or epoch == config.epochs
        state.epoch, state.order, state.position, state.epoch_elapsed = epoch + 1, None, 0, 0.0
        save_progress()

    if state.best_state is None:
        raise DivergedError("no epoch produced a usable model (every validation was non-finite); lower the "
                            "learning rate and start a new run")
    model.load_state_dict(state.best_state)
    history = state.history
    best_epoch = state.best_epoch
    valid_best = history[best_epoch - 1]["valid"]
    test = evaluate(model, split, "test", config.max_len, config.eval, device)
    epoch_seconds = sorted(state.epoch_seconds)
    result = TrainResult(
        best_epoch=best_epoch, valid=valid_best, test=test, history=history,
        seconds_per_epoch=epoch_seconds[len(epoch_seconds) // 2], run_dir=run_path, model=model,
    )
    if run_path is not None:
        write_json(run_path / "metrics.json", {
            "status": "finished", "model": config.model, "dataset": dataset.name, "fingerprint": fingerprint,
            "best_epoch": best_epoch, "epochs_run": len(history), "valid_metric": config.valid_metric,
            "valid": valid_best, "test": test, "median_seconds_per_epoch": result.seconds_per_epoch,
            "skipped_steps": guard.total, "history": history,
        })
        checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
    return result


def _restore(checkpoint: Path, config: TrainConfig, fingerprint: str, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device) -> TrainProgress:
    """Load ``resume.pt`` into the freshly built model and optimiser; returns the loop's progress."""
    saved = load_run_state(checkpoint, "train")
    if saved.get("fingerprint") != fingerprint:
        raise DataError(f"{checkpoint} was written for other data (fingerprint mismatch); resume with the dataset "
                        "and preprocessing the run started with")
    if saved.get("config") != to_dict(config):
        raise ConfigError(f"{checkpoint} was written with other settings than the ones given; resume with the "
                          "run's own config.yaml")
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = TrainProgress.from_payload(saved["progress"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{checkpoint} does not match this run ({type(err).__name__}); it is corrupted or from an "
                        "incompatible version") from None
    if state.best_state is not None:
        state.best_state = {k: v.to(device) for k, v in state.best_state.items()}
    restore_rng(saved["rng"], generator)
    return state


def _stop_diverged(run_path: Path | None, guard: NonFiniteGuard, state: TrainProgress) -> None:
    """Report the divergence (``best.pt`` and the last checkpoint stay as they are) and stop."""
    message = guard.message("the training loss", state.steps)
    log.error(message)
    if run_path is not None:
        write_json(run_path / "metrics.json", {"status": "diverged", "message": message,
                                               "skipped_steps": guard.total, "history": state.history})
    raise DivergedError(message)
