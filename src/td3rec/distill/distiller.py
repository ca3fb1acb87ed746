"""The TD3 outer loop (DESIGN §4): learn the Tucker factors U, T, G so that learners trained on the summary
match learners trained on the real data.

Per outer step: draw an unroll length (RaT-BPTT), train the learner on the summary through the inner loop,
then on a real batch compute cross-entropy + λ · MSE to the teacher's features, back-propagate into U, T, G
(through the window steps only) and take a clipped Adam step with a cosine schedule.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm.auto import tqdm

from td3rec.config import dump_yaml, to_dict
from td3rec.data.sequences import Examples, SequenceDataset, iterate_batches, leave_one_out, prefix_examples
from td3rec.distill.config import DistillConfig
from td3rec.distill.inner_loop import EMBEDDING_KEY, InnerLoop, draw_unroll_length
from td3rec.distill.teacher import Teacher, load_teacher, teacher_features, train_teacher
from td3rec.evaluation.summary_eval import evaluate_sources
from td3rec.evaluation.sources import SoftSequences
from td3rec.models.registry import build_model
from td3rec.summary.io import save_summary
from td3rec.summary.readout import logsumexp_scores
from td3rec.summary.tucker import TuckerConfig, TuckerSummary
from td3rec.training.checkpoint import load_checkpoint
from td3rec.training.config import TrainConfig
from td3rec.utils.atomic import write_json, write_text
from td3rec.utils.device import resolve_device
from td3rec.utils.seeding import seed_everything

log = logging.getLogger(__name__)


@dataclass
class DistillResult:
    """Outcome of a distillation run."""

    summary: TuckerSummary
    best_epoch: int
    best_value: float
    history: list[dict] = field(default_factory=list)
    seconds_per_step: float = 0.0
    run_dir: Path | None = None


def outer_loss(model, params: dict, batch: Examples, targets_features: torch.Tensor, feature_weight: float,
               chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real-batch objective of the learner at ``params``: cross-entropy of the next items plus
    ``feature_weight`` · MSE to the teacher's features. Returns ``(total, ce, mse)``."""
    table = params[EMBEDDING_KEY]
    inputs = F.embedding(batch.inputs, table)
    features = functional_call(model, params, (inputs, batch.lengths))
    items = table[1 : model.n_items + 1]
    ce = (logsumexp_scores(features, items, chunk_size) - (features * table[batch.targets]).sum(-1)).mean()
    mse = F.mse_loss(features, targets_features)
    return ce + feature_weight * mse, ce, mse


class Distiller:
    """Runs TD3 on one dataset with one config; writes summaries, logs and metrics into a run folder."""

    def __init__(self, dataset: SequenceDataset, config: DistillConfig, run_dir: str | Path | None = None,
                 teacher_run: str | Path | None = None, progress: bool = True) -> None:
        config.validate()
        self.dataset = dataset
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.teacher_run = Path(teacher_run) if teacher_run is not None else None
        self.progress = progress
        self.device = resolve_device(config.device)

    # -- setup --------------------------------------------------------------------------------------
    def _teacher(self) -> Teacher:
        if self.teacher_run is not None:
            teacher = load_teacher(self.teacher_run, self.dataset, self.device)
            if teacher.model_name != self.config.model:
                log.warning("teacher is a %s but model=%s; distilling with the teacher's architecture",
                            teacher.model_name, self.config.model)
            return teacher
        if self.run_dir is None:
            raise ValueError("training a teacher on the fly needs a run_dir")
        train_cfg = TrainConfig(model=self.config.model, max_len=self.config.max_len, seed=self.config.seed,
                                device=str(self.device), eval=self.config.eval)
        return train_teacher(self.dataset, train_cfg, self.run_dir / "teacher", self.progress, self.device)

    def _start_params(self, teacher: Teacher, generator: torch.Generator) -> dict:
        """Learner start: a random trajectory checkpoint (reference) or a random initialisation."""
        if self.config.reset == "random":
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            fresh = build_model(teacher.model_name, self.dataset.n_items, teacher.model.max_len,
                                **_model_options(teacher.model)).to(self.device)
            return dict(fresh.named_parameters())
        first, last = self.config.trajectory_epochs
        paths = teacher.checkpoints_between(first, last)
        path = paths[int(torch.randint(0, len(paths), (1,), generator=generator))]
        model, _ = load_checkpoint(path, self.device)
        return dict(model.named_parameters())

    # -- main loop ----------------------------------------------------------------------------------
    def run(self) -> DistillResult:
        cfg = self.config
        generator = seed_everything(cfg.seed)
        split = leave_one_out(self.dataset)
        examples = prefix_examples(split, cfg.max_len)
        teacher = self._teacher()
        feats = teacher_features(teacher.model, examples, self.device)
        V = teacher.model.item_vectors().detach().clone()
        summary = TuckerSummary(
            TuckerConfig(n_sequences=cfg.n_sequences, seq_len=cfg.seq_len, d1=cfg.d1, d2=cfg.d2,
                         init_std=cfg.init_std, learn_item_factor=cfg.learn_item_factor, chunk_size=cfg.chunk_size),
            V, generator=generator,
        ).to(self.device)
        learner = build_model(teacher.model_name, self.dataset.n_items, teacher.model.max_len,
                              **_model_options(teacher.model)).to(self.device)
        inner = InnerLoop(learner, cfg.inner, cfg.n_sequences, cfg.chunk_size)
        opt = torch.optim.Adam(summary.parameters(), lr=cfg.outer_lr, weight_decay=cfg.outer_weight_decay)
        steps_per_epoch = math.ceil(len(examples) / cfg.real_batch_size)
        total_steps = cfg.epochs * steps_per_epoch
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
        fingerprint = self.dataset.fingerprint()
        meta_base = {
            "method": "td3", "dataset": self.dataset.name, "dataset_fingerprint": fingerprint,
            "n_items": self.dataset.n_items, "item_tokens": [str(t) for t in self.dataset.item_tokens],
            "teacher_model": teacher.model_name, "teacher_options": _model_options(teacher.model),
            "teacher_run": str(teacher.run_dir), "config": to_dict(cfg),
        }
        if self.run_dir is not None:
            write_text(self.run_dir / "config.yaml", dump_yaml(cfg))
        log.info("distilling %s: %d real examples, %d outer steps per epoch, summary %d x %d (d1=%d d2=%d d3=%d), "
                 "%d learned parameters", self.dataset.name, len(examples), steps_per_epoch, cfg.n_sequences,
                 cfg.seq_len, cfg.d1, cfg.d2, V.shape[1], summary.num_parameters(include_item_factor=False))

        history: list[dict] = []
        best_value, best_epoch = float("-inf"), 0
        step_seconds: list[float] = []
        global_step = 0
        skipped = 0
        log_path = self.run_dir / "steps.jsonl" if self.run_dir is not None else None
        bar = tqdm(total=total_steps, desc="distill", disable=None if self.progress else True)
        epoch_seconds: list[float] = []
        for epoch in range(1, cfg.epochs + 1):
            epoch_start = time.perf_counter()
            state = inner.start(self._start_params(teacher, generator))
            for index in iterate_batches(len(examples), cfg.real_batch_size, True, generator):
                if cfg.max_steps and global_step >= cfg.max_steps:
                    break
                start = time.perf_counter()
                if cfg.reset == "step" and global_step > 0:
                    state = inner.start(self._start_params(teacher, generator))
                n_unroll = draw_unroll_length(cfg.inner_steps, cfg.window, cfg.random_unroll, generator)
                W = summary.core_product()
                state = inner.unroll(state, W, summary.item_factor, n_unroll, cfg.window, generator)
                batch = examples.subset(index).to(self.device)
                learner.eval()
                loss, ce, mse = outer_loss(learner, state.params, batch, feats[index.to(self.device)],
                                           cfg.feature_weight, cfg.chunk_size)
                learner.train()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(summary.parameters(),
                                                           cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
                if torch.isfinite(loss) and torch.isfinite(grad_norm):
                    opt.step()
                else:
                    skipped += 1
                    log.warning("outer step %d: non-finite loss or gradient, update skipped", global_step)
                sched.step()
                state = state.detached()
                global_step += 1
                step_seconds.append(time.perf_counter() - start)
                record = {"step": global_step, "epoch": epoch, "unroll": n_unroll, "loss": float(loss.detach()),
                          "ce": float(ce.detach()), "mse": float(mse.detach()), "grad_norm": float(grad_norm),
                          "lr": sched.get_last_lr()[0], "seconds": step_seconds[-1]}
                if log_path is not None:
                    with open(log_path, "a", encoding="utf-8") as handle:
                        handle.write(json.dumps(record) + "\n")
                bar.update(1)
                bar.set_postfix(epoch=epoch, ce=f"{float(ce.detach()):.3f}", mse=f"{float(mse.detach()):.3f}", N=n_unroll)
            epoch_seconds.append(time.perf_counter() - epoch_start)
            last_epoch = (cfg.max_steps and global_step >= cfg.max_steps) or epoch == cfg.epochs
            if (cfg.eval_every and epoch % cfg.eval_every == 0) or last_epoch:
                valid = self._validate(summary, teacher, split)
                value = float(valid["mean"][cfg.select_metric.split(":")[0]][cfg.select_metric.split(":")[1]])
                row = {"epoch": epoch, "step": global_step, "valid": valid["mean"], "valid_std": valid["std"]}
                history.append(row)
                log.info("epoch %d: valid %s %.4f", epoch, cfg.select_metric, value)
                if value > best_value:
                    best_value, best_epoch = value, epoch
                    self._save(summary, "summary_best.safetensors", dict(meta_base, epoch=epoch, valid=valid["mean"]))
            self._save(summary, "summary_last.safetensors", dict(meta_base, epoch=epoch))
            if self.run_dir is not None:
                write_json(self.run_dir / "metrics.json", {"status": "running", "history": history,
                                                           "skipped_steps": skipped})
            if last_epoch:
                break
        bar.close()
        step_seconds.sort()
        result = DistillResult(summary=summary, best_epoch=best_epoch, best_value=best_value, history=history,
                               seconds_per_step=step_seconds[len(step_seconds) // 2] if step_seconds else 0.0,
                               run_dir=self.run_dir)
        if self.run_dir is not None:
            write_json(self.run_dir / "metrics.json", {
                "status": "finished", "best_epoch": best_epoch, "select_metric": cfg.select_metric,
                "best_value": best_value, "outer_steps": global_step, "skipped_steps": skipped,
                "median_seconds_per_step": result.seconds_per_step,
                "median_seconds_per_epoch": sorted(epoch_seconds)[len(epoch_seconds) // 2],
                "peak_rss_gib": peak_rss_gib(), "history": history,
                "summary_parameters": summary.num_parameters(include_item_factor=False),
                "summary_parameters_with_item_factor": summary.num_parameters(include_item_factor=True),
                "real_interactions": self.dataset.n_interactions,
            })
        return result

    def _validate(self, summary: TuckerSummary, teacher: Teacher, split) -> dict:
        """Train fresh learners on the current summary; validation metrics (mean and std over learners)."""
        cfg = self.config
        source = SoftSequences(summary.core_product().detach(), summary.item_factor.detach(), cfg.chunk_size)
        return evaluate_sources(
            source, split, arch=teacher.model_name, protocol=cfg.eval_init, seeds=range(cfg.eval_learners),
            which="valid", max_len=teacher.model.max_len, eval_config=cfg.eval, device=self.device,
            teacher=teacher.model, model_options=_model_options(teacher.model),
            training=_learner_training(cfg, cfg.eval_steps),
        )

    def _save(self, summary: TuckerSummary, name: str, meta: dict) -> None:
        if self.run_dir is None:
            return
        tensors = summary.tensors()
        if not all(torch.isfinite(t).all() for t in tensors.values()):
            log.error("summary has non-finite values; %s not saved", name)
            return
        save_summary(self.run_dir / name, tensors, dict(meta, factor_shapes={k: list(v.shape) for k, v in tensors.items()}))


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20


def _model_options(model) -> dict:
    import dataclasses

    return dataclasses.asdict(model.config)


def _learner_training(cfg: DistillConfig, steps: int):
    from td3rec.evaluation.learner_training import LearnerTrainingConfig

    return LearnerTrainingConfig(steps=steps, optimizer=cfg.inner.optimizer, lr=cfg.inner.lr,
                                 weight_decay=cfg.inner.weight_decay, batch_size=cfg.inner.batch_size,
                                 augment=cfg.inner.augment, chunk_size=cfg.chunk_size)
