"""Settings of full-data training (``td3rec train``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from td3rec.config import check_values
from td3rec.errors import ConfigError
from td3rec.evaluation.evaluator import EvalConfig
from td3rec.models.registry import make_model_config
from td3rec.utils.device import resolve_device


@dataclass
class TrainConfig:
    """Full-data training of one learner with early stopping on a validation metric.

    Attributes:
        model: learner architecture: sasrec, gru4rec, narm or bert4rec.
        model_options: overrides of the learner's own config (e.g. ``{hidden_size: 64, n_layers: 2}``).
        max_len: maximum input sequence length L (older items are cut).
        mode: ``prefix``: every prefix of every training sequence is one example with its next item (RecBole's
            augmentation, as in the TD3 reference; cost ~ L x interactions per epoch); ``window``: sequences
            cut into windows of L + 1 items, every position predicted in one pass (~ L times cheaper).
        epochs: maximum number of epochs (passes over every training prefix).
        batch_size: training examples (prefix mode) per optimiser step.
        window_batch_size: windows (window mode) per optimiser step.
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        patience: stop after this many epochs without improvement of ``valid_metric``.
        valid_metric: ``PROTOCOL:METRIC`` used for early stopping and the best checkpoint, e.g.
            ``full:NDCG@10`` (full ranking) or ``uni100:MRR@10``.
        keep_trajectory: keep one checkpoint per epoch (distillation samples learner starts from them).
        checkpoint_every: write the resumable checkpoint (``resume.pt``: model, Adam state, random generator
            states, position in the epoch, best state, patience counter, history) every this many optimiser
            steps, and at every epoch end (0 = only at epoch ends); ``td3rec train --resume RUN_DIR``
            continues from it.
        max_nonfinite_steps: stop (exit code 3) after this many optimiser steps in a row with a NaN/inf loss
            (each such step is skipped and counted; 0 = never stop).
        seed: seed of initialisation, shuffling, dropout and negative sampling.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        eval: evaluation settings (metrics, protocols, batch size).
    """

    model: str = "sasrec"
    model_options: dict = field(default_factory=dict)
    max_len: int = 50
    mode: str = "prefix"
    epochs: int = 200
    batch_size: int = 2048
    window_batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 0.0
    patience: int = 10
    valid_metric: str = "full:NDCG@10"
    keep_trajectory: bool = True
    checkpoint_every: int = 100
    max_nonfinite_steps: int = 5
    seed: int = 0
    device: str = "auto"
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        """Reject impossible settings before any work starts."""
        check_values(self)
        if self.mode not in ("prefix", "window"):
            raise ConfigError(f"mode must be prefix or window, not {self.mode!r}")
        for name in ("max_len", "epochs", "batch_size", "window_batch_size", "patience"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not all(isinstance(key, str) and key for key in self.model_options):
            raise ConfigError(f"model_options must map option names to values, got {self.model_options!r}")
        make_model_config(self.model, **self.model_options)  # unknown model or option -> ConfigError
        resolve_device(self.device)
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        for name in ("checkpoint_every", "max_nonfinite_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        self.eval.check_metric(self.valid_metric, "valid_metric")
