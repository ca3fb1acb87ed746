"""The TD3 outer loop (DESIGN §4): learn the Tucker factors U, T, G so that learners trained on the summary
match learners trained on the real data.

Per outer step: draw an unroll length (RaT-BPTT), train the learner on the summary through the inner loop,
then on a real batch compute cross-entropy + λ · MSE to the teacher's features, back-propagate into U, T, G
(through the window steps only) and take a clipped Adam step with a cosine schedule.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import resource
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm.auto import tqdm

from td3rec.config import dump_yaml, to_dict
from td3rec.data.sequences import Examples, SequenceDataset, leave_one_out, prefix_examples
from td3rec.distill.balance import balance_meta_gradient
from td3rec.distill.config import DistillConfig
from td3rec.distill.distributed import SINGLE_PROCESS, SingleProcess
from td3rec.distill.inner_loop import EMBEDDING_KEY, InnerLoop, LearnerState, draw_unroll_length
from td3rec.distill.progress import DistillProgress, learner_from_payload, learner_payload
from td3rec.distill.summaries import build_summary
from td3rec.distill.teacher import Teacher, epoch_of, load_teacher, match_teachers, train_teacher
from td3rec.errors import ConfigError, DataError, DivergedError
from td3rec.evaluation.summary_eval import evaluate_sources
from td3rec.models.registry import build_model
from td3rec.summary.io import save_summary
from td3rec.summary.readout import logsumexp_scores
from td3rec.summary.support import draw_negatives, refresh_support, sampled_logsumexp, top_k_support
from td3rec.distill.schedule import CALIBRATION_STEPS, UNPLANNED, TimeBudget, budget_clock, cosine_factor
from td3rec.summary.tucker import TuckerSummary
from td3rec.training.checkpoint import load_checkpoint
from td3rec.training.config import TrainConfig
from td3rec.utils.atomic import write_json, write_text
from td3rec.utils.device import resolve_device
from td3rec.utils.jsonl import append_jsonl, rewrite_jsonl
from td3rec.utils.numerics import NonFiniteGuard, all_finite
from td3rec.utils.precision import learner_autocast
from td3rec.utils.rng import capture_rng, restore_rng
from td3rec.utils.run_state import RESUME_FILE, load_run_state, save_run_state
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
               chunk_size: int | None, precision: str = "fp32",
               negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real-batch objective of the learner at ``params``: cross-entropy of the next items plus
    ``feature_weight`` · MSE to the teacher's features (the learner's forward at ``precision``). Returns
    ``(total, ce, mse)``. ``negatives``: item rows (0-based) of a sampled normaliser
    (:func:`~td3rec.summary.support.sampled_logsumexp`); none = exact over every item."""
    table = params[EMBEDDING_KEY]
    with learner_autocast(precision, table.device):
        inputs = F.embedding(batch.inputs, table)
        features = functional_call(model, params, (inputs, batch.lengths))
        items = table[1 : model.n_items + 1]
        if negatives is None:
            lse = logsumexp_scores(features, items, chunk_size)
        else:
            lse = sampled_logsumexp(features, items, (batch.targets - 1)[:, None], negatives)
        ce = (lse - (features * table[batch.targets]).sum(-1)).mean()
    features, ce = features.to(table.dtype), ce.to(table.dtype)  # back from autocast's dtype (no-op in fp32/fp64)
    mse = F.mse_loss(features, targets_features)
    return ce + feature_weight * mse, ce, mse


@dataclass
class Learner:
    """One architecture of a distillation: its teacher, its functional inner loop, the teacher's features on the
    real examples, and where its inner learner stands."""

    teacher: Teacher
    inner: InnerLoop
    features: torch.Tensor
    state: LearnerState | None = None
    #: the random draws of this learner (starts, unroll lengths, cuts, negatives; its dropout is seeded from it):
    #: the run's generator for a single architecture, its own for each of several
    generator: torch.Generator | None = None
    #: whether this process trains it (learner parallelism gives each architecture to one process)
    owned: bool = True

    @property
    def arch(self) -> str:
        return self.teacher.model_name


class Distiller:
    """Runs TD3 on one dataset with one config; writes summaries, logs and metrics into a run folder.

    ``teacher_run``: a ``td3rec train`` run folder, or one per architecture of a multi-architecture
    distillation (matched to ``config.model``'s architectures by their model); none = train them in the run."""

    def __init__(self, dataset: SequenceDataset, config: DistillConfig, run_dir: str | Path | None = None,
                 teacher_run: str | Path | Sequence[str | Path] | None = None, progress: bool = True,
                 distributed: SingleProcess | None = None) -> None:
        config.validate()
        self.dataset = dataset
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        runs = [] if teacher_run is None else [teacher_run] if isinstance(teacher_run, (str, Path)) else teacher_run
        self.teacher_runs = [Path(run) for run in runs]
        self.progress = progress
        #: the process group of a multi-process run (td3rec.distill.distributed); the no-op one otherwise
        self.dist = distributed if distributed is not None else SINGLE_PROCESS
        self.device = self.dist.device(resolve_device(config.device))
        #: the folder this process writes to: the run folder in process 0 (or a single process), else none
        self.out_dir = self.run_dir if self.dist.is_main else None
        #: how the summary was fitted to a real subset (``init_from``), in this process's run (none if resumed)
        self.init_fit: dict | None = None
        if self.dist.world_size > 1 and not self.teacher_runs:
            raise ConfigError("multi-process distillation needs a trained teacher (--teacher RUN_DIR): train one "
                              "with `td3rec train` first")
        if self.dist.world_size > 1 and config.time_budget and config.time_budget_clock == "cpu":
            raise ConfigError("time_budget_clock=cpu counts one process's CPU time; a multi-process run needs the "
                              "wall clock (time_budget_clock=wall)")

    # -- setup --------------------------------------------------------------------------------------
    def _teachers(self, resume: bool = False) -> list[Teacher]:
        """One teacher per architecture, in the order of ``config.model`` (loaded, or trained in the run)."""
        archs = self.config.architectures
        if self.teacher_runs:
            teachers = [load_teacher(run, self.dataset, self.device) for run in self.teacher_runs]
            if len(archs) == 1 and len(teachers) == 1:
                if teachers[0].model_name != archs[0]:
                    log.warning("teacher is a %s but model=%s; distilling with the teacher's architecture",
                                teachers[0].model_name, archs[0])
                return teachers
            return match_teachers(teachers, archs)
        if self.run_dir is None:
            raise ValueError("training a teacher on the fly needs a run_dir")
        teachers = []
        for arch in archs:
            train_cfg = TrainConfig(model=arch, max_len=self.config.max_len, seed=self.config.seed,
                                    device=str(self.device), eval=self.config.eval)
            folder = self.run_dir / ("teacher" if len(archs) == 1 else f"teacher-{arch}")
            teachers.append(train_teacher(self.dataset, train_cfg, folder, self.progress, self.device, resume=resume))
        return teachers

    def _check_trajectory(self, teacher: Teacher) -> list[int] | None:
        """The teacher epochs learner starts are drawn from when they differ from ``trajectory_epochs`` (a
        teacher that stopped early), with a warning; ``None`` when the setting is honoured."""
        if self.config.reset == "random":
            return None
        first, last = self.config.trajectory_epochs
        used = sorted(epoch_of(p) for p in teacher.checkpoints_between(first, last))
        if used and used[0] == first and used[-1] == last:
            return None
        span = [used[0], used[-1]] if used else []
        log.warning("the teacher has checkpoints of epochs %s only within trajectory_epochs [%d, %d]: learner "
                    "starts are drawn from epochs %s (recorded in metrics.json as trajectory_fallback)",
                    span, first, last, span)
        return span

    def _start_params(self, teacher: Teacher, generator: torch.Generator, V: torch.Tensor | None = None) -> dict:
        """Learner start: a random trajectory checkpoint (reference), a random initialisation, or a learner
        initialised like the validation learners (``learner_start=protocol``; ``V``: the summary's item factor)."""
        if self.config.learner_start == "protocol" and self.config.reset != "random":
            from td3rec.evaluation.initialisation import init_learner

            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            fresh = init_learner(teacher.model_name, self._learner_protocol(teacher, V), self.dataset.n_items,
                                 teacher.model.max_len, seed, teacher=teacher.model, item_factor=V,
                                 model_options=_model_options(teacher.model), device=self.device)
            return dict(fresh.named_parameters())
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

    def _fit_to_real(self, summary, teacher: Teacher, split) -> dict:
        """Fit the fresh summary to the ``init_from`` real subset of ``n_sequences`` users (truncated to
        ``seq_len``; a shorter user's last positions are left free)."""
        from td3rec.summary.fit import fit_to_items
        from td3rec.summary.real_subset import FEATURE_METHODS, last_prefix_features, real_subset

        cfg = self.config
        features = last_prefix_features(teacher.model, split) if cfg.init_from in FEATURE_METHODS else None
        subset = real_subset(split, cfg.init_from, cfg.n_sequences, cfg.seq_len, seed=cfg.seed, features=features)
        ids = subset.ids.to(self.device)
        positions = torch.arange(ids.shape[1], device=self.device)
        items = torch.where(positions[None, :] < subset.full_lengths.to(self.device)[:, None], ids - 1, -1)
        items = torch.nn.functional.pad(items, (0, cfg.seq_len - items.shape[1]), value=-1)
        return fit_to_items(summary, items, cfg.init_fit_steps)

    def _learner_protocol(self, teacher: Teacher, V: torch.Tensor | None) -> str:
        """The initialisation of ``teacher``'s validation learners: ``eval_init``, except that shared-item-factor
        falls back to scratch for a learner whose width differs from V's."""
        protocol = self.config.eval_init
        if protocol == "shared-item-factor" and V is not None and V.shape[1] != _width(teacher):
            return "scratch"
        return protocol

    # -- main loop ----------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> DistillResult:
        """Distill; with ``resume`` continue from the run folder's checkpoint (``resume.pt``) when there is
        one (without one, the run starts over in the same folder)."""
        cfg = self.config
        now = budget_clock(cfg.time_budget_clock)  # the clock of the budget and of every recorded time
        generator = seed_everything(cfg.seed)
        split = leave_one_out(self.dataset)
        examples = prefix_examples(split, cfg.max_len)
        checkpoint = self.run_dir / RESUME_FILE if self.run_dir is not None else None
        log_path = self.out_dir / "steps.jsonl" if self.out_dir is not None else None
        resuming = resume and checkpoint is not None and checkpoint.is_file()
        if self.out_dir is not None and not resuming:  # written first: a run stopped at any point can resume
            if resume:
                log.warning("%s has no resume checkpoint yet (stopped before the first one): starting over",
                            self.run_dir)
            write_text(self.run_dir / "config.yaml", dump_yaml(cfg))
            write_text(log_path, "")
        teachers = self._teachers(resume)
        for teacher in teachers:
            cfg.check_learner(teacher.model_name, teacher.model.max_len)
        fallbacks = {t.model_name: self._check_trajectory(t) for t in teachers}
        self.trajectory_fallback = (fallbacks[teachers[0].model_name] if len(teachers) == 1 else
                                    {arch: span for arch, span in fallbacks.items() if span is not None} or None)
        # the global generator (dropout, random learner starts) no longer depends on whether the teacher was
        # trained here or loaded
        torch.manual_seed(cfg.seed)
        teacher = teachers[0]  # the primary architecture: its teacher's item embedding is the item factor V
        learners = []
        for t in teachers:
            model = build_model(t.model_name, self.dataset.n_items, t.model.max_len,
                                **_model_options(t.model)).to(self.device)
            inner_cfg = dataclasses.replace(cfg.inner, augment=cfg.inner.augment_for(t.model_name))
            learners.append(Learner(t, InnerLoop(model, inner_cfg, cfg.n_sequences, cfg.chunk_size, cfg.precision),
                                    self.dist.teacher_features(t.model, examples, self.device)))
        multi = len(learners) > 1
        # several processes and at least as many architectures: each process trains its own (learner parallelism)
        split_learners = multi and 1 < self.dist.world_size <= len(learners)
        for i, learner in enumerate(learners):
            learner.generator = torch.Generator().manual_seed(learner_seed(cfg.seed, i)) if multi else generator
            learner.owned = not split_learners or i % self.dist.world_size == self.dist.rank
        V = teacher.model.item_vectors().detach().clone()
        summary = build_summary(cfg, V, generator=generator).to(self.device)  # TD3 (Tucker) or Farzi
        init_seconds = 0.0
        if cfg.init_from != "noise" and not resuming:  # (charged to the budget: it is part of distilling)
            started = now()
            self.init_fit = self._fit_to_real(summary, teacher, split)
            init_seconds = now() - started
            log.info("summary initialised from the %s-%d real subset in %.1f s: fit loss %.3f -> %.3f, top-1 %.1f%%",
                     cfg.init_from, cfg.n_sequences, init_seconds, self.init_fit["first_loss"],
                     self.init_fit["last_loss"], 100 * self.init_fit["top1"])
        opt = torch.optim.Adam(summary.parameters(), lr=cfg.outer_lr, weight_decay=cfg.outer_weight_decay)
        batch_size = cfg.real_batch_size
        steps_per_epoch = math.ceil(len(examples) / batch_size)
        total_steps = cfg.epochs * steps_per_epoch
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        budget = (TimeBudget(cfg.time_budget, steps_per_epoch, cfg.eval_every, cfg.max_steps)
                  if cfg.time_budget else None)
        progress = DistillProgress()
        progress.elapsed = init_seconds
        if budget is not None:  # the cosine spans the planned steps (re-planned as the run measures itself)
            total_steps = progress.planned_steps = UNPLANNED
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda t: cosine_factor(t, progress.planned_steps))
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
        k = cfg.support_size if 0 < cfg.support_size < self.dataset.n_items else 0  # 0: every item (dense)
        fingerprint = self.dataset.fingerprint()
        meta_base = {
            **summary.metadata(), "dataset": self.dataset.name, "dataset_fingerprint": fingerprint,
            "n_items": self.dataset.n_items, "item_tokens": [str(t) for t in self.dataset.item_tokens],
            "teacher_model": teacher.model_name, "teacher_options": _model_options(teacher.model),
            "teacher_run": str(teacher.run_dir), "config": to_dict(cfg), "support_size": k,
        }
        if len(learners) > 1:
            meta_base.update(models=[l.arch for l in learners],
                             teacher_runs={l.arch: str(l.teacher.run_dir) for l in learners})
        if resuming:
            restored, states, rngs = self._restore(checkpoint, fingerprint, summary, opt, sched, generator,
                                                   len(learners))
            for learner, state, rng in zip(learners, states, rngs):
                if learner.owned:
                    learner.state = state
                    if multi:
                        learner.generator.set_state(rng)
            for name in restored.to_payload():  # in place: the budget schedule reads progress.planned_steps
                setattr(progress, name, getattr(restored, name))
            kept = rewrite_jsonl(log_path, lambda r: r.get("step", 0) <= progress.global_step) if log_path else 0
            log.info("resuming %s at outer step %d (epoch %d, %d steps of it done); %d step records kept",
                     self.run_dir, progress.global_step, progress.epoch, progress.position, kept)
        self.dist.sync_start(progress.global_step, generator)  # (multi-process) same start, same generators
        log.info("distilling %s: %d real examples, %d outer steps per epoch, %s summary %d x %d (d3=%d), "
                 "%d learned parameters", self.dataset.name, len(examples), steps_per_epoch, cfg.method,
                 cfg.n_sequences, cfg.seq_len, V.shape[1], summary.num_parameters(include_item_factor=False))

        guard = NonFiniteGuard(cfg.max_nonfinite_steps, progress.skipped, progress.nonfinite_streak)

        def save_progress() -> None:
            # (learner parallelism: every learner's state and generator, gathered from the process that owns it)
            owned = {i: (learner_payload(l.state), l.generator.get_state() if multi else None)
                     for i, l in enumerate(learners) if l.owned}
            gathered = (_merge(self.dist.collect(owned)) if split_learners else owned)
            if checkpoint is None or self.out_dir is None:
                return
            progress.skipped, progress.nonfinite_streak = guard.total, guard.streak
            progress.elapsed = now() - clock
            save_run_state(checkpoint, "distill", {
                "config": to_dict(cfg), "fingerprint": fingerprint, "summary": _cpu_state(summary.state_dict()),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": capture_rng(generator, cuda=self.device.type == "cuda"),
                "learners": [gathered[i][0] for i in range(len(learners))],
                "learner_rngs": [gathered[i][1] for i in range(len(learners))], "progress": progress.to_payload(),
            })

        bar = tqdm(total=None if budget else total_steps, initial=progress.global_step, desc="distill",
                   disable=None if self.progress else True)
        clock = now() - progress.elapsed  # the budget's clock (teacher excluded), across resumes

        def step_limit() -> int:
            return progress.planned_steps if budget is not None else cfg.max_steps

        def replan() -> None:
            progress.elapsed = now() - clock
            planned = budget.plan(progress.global_step, progress.elapsed, progress.step_seconds,
                                  progress.validation_seconds)
            if planned != progress.planned_steps:
                log.info("time budget: %d outer steps planned (%d done, %.0f of %.0f s used)", planned,
                         progress.global_step, progress.elapsed, budget.seconds)
            progress.planned_steps = planned
            bar.total = planned

        def out_of_time() -> bool:
            return budget is not None and budget.out_of_time(now() - clock, progress.step_seconds,
                                                             progress.validation_seconds)

        while not progress.done:
            epoch = progress.epoch
            epoch_start = now() - progress.epoch_elapsed
            if progress.order is None:  # the epoch starts: learner starts, then the order of the real examples
                for learner in learners:
                    if learner.owned:
                        learner.state = learner.inner.start(self._start_params(learner.teacher, learner.generator,
                                                                               summary.shared_item_factor.detach()))
                progress.order = torch.randperm(len(examples), generator=generator)
                progress.position = 0
            while (progress.position < steps_per_epoch and not (step_limit() and progress.global_step >= step_limit())
                   and not (progress.global_step and out_of_time())):
                start = now()
                index = progress.order[progress.position * batch_size : (progress.position + 1) * batch_size]
                step_learners = [learners[i] for i in cfg.meta_batch(progress.global_step)]
                if k:  # (kept in the progress record for --resume)
                    with torch.no_grad():
                        W = summary.core_product()
                    progress.support = (top_k_support(W, summary.item_factor, k) if progress.support is None else
                                        refresh_support(W, summary.item_factor, progress.support.to(self.device),
                                                        progress.global_step % cfg.support_refresh,
                                                        cfg.support_refresh)).cpu()
                support = progress.support.to(self.device) if k else None
                # this process's contiguous share of the global batch (learner parallelism: all of it)
                local = index if split_learners else self.dist.share(index)
                batch = examples.subset(local).trimmed().to(self.device) if len(local) else None
                unrolls: dict[str, int] = {}

                def learner_loss(learner: Learner):
                    """Train one learner on the summary (its unroll), then its loss on the real batch."""
                    draws = learner.generator
                    if multi:  # dropout from the learner's own draws: the same on whichever process trains it
                        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=draws)))
                    if cfg.reset == "step" and progress.position > 0:  # (the epoch's first step has a fresh start)
                        learner.state = learner.inner.start(self._start_params(learner.teacher, draws,
                                                                               summary.shared_item_factor.detach()))
                    n_unroll = draw_unroll_length(cfg.inner_steps, cfg.window, cfg.random_unroll, draws)
                    unrolls[learner.arch] = n_unroll
                    anchor = (summary.item_factor if cfg.meta_item_factor and
                              self._learner_protocol(learner.teacher, summary.item_factor) == "shared-item-factor"
                              else None)  # (a learner of another width starts from scratch: no tie)
                    learner.state = learner.inner.unroll(learner.state, summary.core_product(), summary.item_factor,
                                                         n_unroll, cfg.window, draws, support, anchor)
                    negatives = (draw_negatives(self.dataset.n_items, cfg.outer_negatives, draws, self.device)
                                 if cfg.outer_negatives else None)
                    if not len(local):
                        return None
                    learner.inner.model.eval()
                    try:
                        return outer_loss(learner.inner.model, learner.state.params, batch,
                                          learner.features[local.to(self.device)], cfg.feature_weight,
                                          cfg.chunk_size, cfg.precision, negatives)
                    finally:
                        learner.inner.model.train()

                opt.zero_grad(set_to_none=True)
                computes = [lambda learner=learner: learner_loss(learner) for learner in step_learners if learner.owned]
                if split_learners:  # the mean over the step's learners, each trained by its own process
                    loss, ce, mse = self.dist.backward_learners(computes, summary.parameters(), len(step_learners))
                    unrolls = _merge(self.dist.collect(unrolls))
                else:  # the global batch's loss and meta-gradient (all-reduced over the shares)
                    loss, ce, mse = self.dist.backward(computes, summary.parameters(), len(local), len(index))
                scale = None
                if cfg.balance_gradients:  # (the gradients are all-reduced: every process scales alike)
                    raw_norm, scale = balance_meta_gradient(summary.parameters(), progress.grad_norms,
                                                            ",".join(l.arch for l in step_learners),
                                                            cfg.balance_window)
                grad_norm = torch.nn.utils.clip_grad_norm_(summary.parameters(),
                                                           cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
                if scale is not None:
                    grad_norm = torch.tensor(raw_norm)  # the record and the guard see the raw norm
                for learner in step_learners:
                    if learner.owned:
                        learner.state = learner.state.detached()
                finite = guard.check(loss, grad_norm)
                if finite:
                    opt.step()
                else:
                    log.warning("outer step %d: non-finite loss or meta-gradient, update skipped (%d in a row, "
                                "%d in all)", progress.global_step + 1, guard.streak, guard.total)
                    for learner in step_learners:
                        if self.dist.any(learner.owned and not all_finite(*learner.state.params.values())):
                            log.warning("the inner %s learner diverged; it restarts from a new start point",
                                        learner.arch)
                            if learner.owned:
                                learner.state = learner.inner.start(self._start_params(
                                    learner.teacher, learner.generator, summary.shared_item_factor.detach()))
                with warnings.catch_warnings():  # a skipped first update is not the misuse torch warns about
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                    sched.step()
                progress.global_step += 1
                progress.position += 1
                progress.step_seconds.append(now() - start)
                n_unroll = [unrolls[l.arch] for l in step_learners]
                n_unroll = n_unroll[0] if len(n_unroll) == 1 else n_unroll
                record = {"step": progress.global_step, "epoch": epoch, "unroll": n_unroll,
                          "loss": float(loss.detach()), "ce": float(ce.detach()), "mse": float(mse.detach()),
                          "grad_norm": float(grad_norm), "lr": sched.get_last_lr()[0], "skipped": not finite,
                          "seconds": progress.step_seconds[-1]}
                if scale is not None:
                    record["grad_scale"] = scale
                if budget is not None:
                    record["planned"] = progress.planned_steps
                if len(learners) > 1:
                    record["models"] = [l.arch for l in step_learners]
                if log_path is not None:
                    append_jsonl(log_path, record)
                bar.update(1)
                bar.set_postfix(epoch=epoch, ce=f"{record['ce']:.3f}", mse=f"{record['mse']:.3f}", N=n_unroll)
                if guard.exceeded:
                    self._stop_diverged(summary, meta_base, epoch, progress, guard)
                if budget is not None and progress.global_step == CALIBRATION_STEPS:
                    replan()
                if cfg.checkpoint_every and progress.global_step % cfg.checkpoint_every == 0:
                    progress.epoch_elapsed = now() - epoch_start
                    save_progress()
            self.dist.sync_summary(summary)  # (multi-process) every process validates and saves process 0's summary
            progress.epoch_seconds.append(now() - epoch_start)
            last_epoch = (bool(step_limit() and progress.global_step >= step_limit()) or out_of_time()
                          or (budget is None and epoch == cfg.epochs))
            if (cfg.eval_every and epoch % cfg.eval_every == 0) or last_epoch:
                started = now()
                valid = self._validate(summary, learners, split, k, split_learners)
                progress.validation_seconds.append(now() - started)
                if budget is not None and not last_epoch:
                    replan()  # (a plan that ends here makes this validation the final one)
                    last_epoch = progress.global_step >= progress.planned_steps or out_of_time()
                value = float(valid["mean"][cfg.select_metric.split(":")[0]][cfg.select_metric.split(":")[1]])
                row = {"epoch": epoch, "step": progress.global_step, "valid": valid["mean"], "valid_std": valid["std"]}
                if "by_model" in valid:
                    row["valid_by_model"] = valid["by_model"]
                progress.history.append(row)
                log.info("epoch %d: valid %s %.4f", epoch, cfg.select_metric, value)
                if value > progress.best_value:
                    progress.best_value, progress.best_epoch = value, epoch
                    self._save(summary, "summary_best.safetensors", dict(meta_base, epoch=epoch, valid=valid["mean"]))
            self._save(summary, "summary_last.safetensors", dict(meta_base, epoch=epoch))
            if self.out_dir is not None:
                write_json(self.run_dir / "metrics.json", {"status": "running", "history": progress.history,
                                                           "outer_steps": progress.global_step,
                                                           "skipped_steps": guard.total})
            progress.epoch, progress.order, progress.position, progress.epoch_elapsed = epoch + 1, None, 0, 0.0
            progress.done = last_epoch
            for learner in learners:  # every epoch starts its learners afresh
                learner.state = None
            progress.elapsed = now() - clock
            save_progress()
        bar.close()
        step_seconds = sorted(progress.step_seconds)
        epoch_seconds = sorted(progress.epoch_seconds)
        result = DistillResult(summary=summary, best_epoch=progress.best_epoch, best_value=progress.best_value,
                               history=progress.history,
                               seconds_per_step=step_seconds[len(step_seconds) // 2] if step_seconds else 0.0,
                               run_dir=self.run_dir)
        if self.out_dir is not None:
            write_json(self.run_dir / "metrics.json", {
                "status": "finished", "best_epoch": progress.best_epoch, "select_metric": cfg.select_metric,
                "best_value": progress.best_value, "outer_steps": progress.global_step, "skipped_steps": guard.total,
                "median_seconds_per_step": result.seconds_per_step,
                "median_seconds_per_epoch": epoch_seconds[len(epoch_seconds) // 2] if epoch_seconds else 0.0,
                "peak_rss_gib": peak_rss_gib(), "history": progress.history,
                "summary_parameters": summary.num_parameters(include_item_factor=False),
                "summary_parameters_with_item_factor": summary.num_parameters(include_item_factor=True),
                "real_interactions": self.dataset.n_interactions,
                "time_budget_seconds": cfg.time_budget, "seconds": progress.elapsed,
                "time_budget_clock": cfg.time_budget_clock, "init_fit": self.init_fit,
                "planned_steps": progress.planned_steps if budget is not None and progress.planned_steps != UNPLANNED else None,
                "trajectory_fallback": self.trajectory_fallback, "processes": self.dist.world_size,
                "parallelism": "learners" if split_learners else "batch" if self.dist.world_size > 1 else "none",
            })
            checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
        return result

    def _restore(self, checkpoint: Path, fingerprint: str, summary: TuckerSummary, opt, sched,
                 generator: torch.Generator,
                 n_learners: int) -> tuple[DistillProgress, list[LearnerState | None], list[torch.Tensor | None]]:
        """Load ``resume.pt`` into the freshly built objects; returns the progress, the learners' states and their
        generators' states (``None`` for a single architecture, whose learner draws from the run's generator)."""
        saved = load_run_state(checkpoint, "distill")
        if saved.get("fingerprint") != fingerprint:
            raise DataError(f"{checkpoint} was written for other data than {self.dataset.name!r} (fingerprint "
                            "mismatch); resume with the dataset and preprocessing the run started with")
        if saved.get("config") != to_dict(self.config):
            raise ConfigError(f"{checkpoint} was written with other settings than the ones given; resume with the "
                              "run's own config.yaml")
        try:
            summary.load_state_dict({k: v.to(self.device) for k, v in saved["summary"].items()})
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            progress = DistillProgress.from_payload(saved["progress"])
            # (checkpoints of single-architecture runs from before multi-architecture distillation hold "learner")
            payloads = saved["learners"] if "learners" in saved else [saved["learner"]]
            states = [learner_from_payload(payload, self.device) for payload in payloads]
            rngs = list(saved["learner_rngs"]) if "learner_rngs" in saved or n_learners > 1 else [None]
            if len(states) != n_learners or len(rngs) != n_learners:
                raise ValueError("one learner state per architecture")
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise DataError(f"{checkpoint} does not match this run ({type(err).__name__}); it is corrupted or from "
                            "an incompatible version") from None
        restore_rng(saved["rng"], generator)
        return progress, states, rngs

    def _stop_diverged(self, summary: TuckerSummary, meta_base: dict, epoch: int, progress: DistillProgress,
                       guard: NonFiniteGuard) -> None:
        """Keep the last good summary (non-finite updates were never applied), report, and stop."""
        message = guard.message("the outer loss or meta-gradient", progress.global_step)
        log.error(message)
        self._save(summary, "summary_last.safetensors", dict(meta_base, epoch=epoch, stopped="non-finite steps"))
        if self.out_dir is not None:
            write_json(self.run_dir / "metrics.json", {
                "status": "diverged", "message": message, "outer_steps": progress.global_step,
                "skipped_steps": guard.total, "best_epoch": progress.best_epoch, "history": progress.history})
            message += f"; the last good summary is {self.run_dir / 'summary_last.safetensors'}"
        raise DivergedError(message)

    def _validate(self, summary: TuckerSummary, learners: list[Learner], split, support_size: int = 0,
                  split_learners: bool = False) -> dict:
        """Train fresh learners on the current summary; validation metrics (mean and std over learners). With
        several architectures: the mean over the architectures of their means and stds, and each one's mean
        (``by_model``); an architecture whose width differs from V's is validated from scratch when ``eval_init``
        is shared-item-factor. With learner parallelism each process validates its own architectures."""
        cfg = self.config
        source = summary.source(cfg.chunk_size, support_size)
        results = {}
        for learner in learners:
            if not learner.owned:
                continue
            teacher = learner.teacher
            options = _model_options(teacher.model)
            protocol = self._learner_protocol(teacher, source.V)
            results[teacher.model_name] = evaluate_sources(
                source, split, arch=teacher.model_name, protocol=protocol, seeds=range(cfg.eval_learners),
                which="valid", max_len=teacher.model.max_len, eval_config=cfg.eval, device=self.device,
                teacher=teacher.model, model_options=options,
                training=_learner_training(cfg, cfg.eval_steps, cfg.inner.augment_for(teacher.model_name)),
            )
        if split_learners:
            gathered = _merge(self.dist.collect(results))
            results = {l.arch: gathered[l.arch] for l in learners}
        if len(results) == 1:
            return next(iter(results.values()))
        by_model = {arch: result["mean"] for arch, result in results.items()}
        return {"mean": _mean_of(list(by_model.values())), "std": _mean_of([r["std"] for r in results.values()]),
                "by_model": by_model}

    def _save(self, summary: TuckerSummary, name: str, meta: dict) -> None:
        if self.out_dir is None:
            return
        tensors = summary.tensors()
        if not all(torch.isfinite(t).all() for t in tensors.values()):
            log.error("summary has non-finite values; %s not saved", name)
            return
        save_summary(self.run_dir / name, tensors, dict(meta, factor_shapes={k: list(v.shape) for k, v in tensors.items()}))


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20


def _model_options(model) -> dict:
    import dataclasses

    return dataclasses.asdict(model.config)


def _learner_training(cfg: DistillConfig, steps: int, augment: bool | None = None):
    from td3rec.evaluation.learner_training import LearnerTrainingConfig

    return LearnerTrainingConfig(steps=steps, optimizer=cfg.inner.optimizer, lr=cfg.inner.lr,
                                 weight_decay=cfg.inner.weight_decay, batch_size=cfg.inner.batch_size,
                                 augment=cfg.inner.augment if augment is None else augment,
                                 chunk_size=cfg.chunk_size)


def learner_seed(seed: int, index: int) -> int:
    """The seed of the generator of learner ``index`` of a multi-architecture run with seed ``seed``."""
    return (seed * 1_000_003 + 7_919 * (index + 1)) % 2**63


def _merge(parts: list[dict]) -> dict:
    """One dict of the dicts gathered from the processes (their keys are disjoint)."""
    merged: dict = {}
    for part in parts:
        merged.update(part)
    return merged


def _width(teacher: Teacher) -> int:
    """The width of a teacher's item embedding (its learners' feature size)."""
    return int(teacher.model.item_vectors().shape[1])


def _mean_of(tables: list[dict]) -> dict:
    """Per protocol and metric: the mean of nested ``{protocol: {metric: value}}`` tables."""
    return {protocol: {metric: sum(t[protocol][metric] for t in tables) / len(tables) for metric in tables[0][protocol]}
            for protocol in tables[0]}
