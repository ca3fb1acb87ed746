"""Settings of TD3 distillation (``td3rec distill``); defaults are the TD3 reference settings on ML-100k."""

from __future__ import annotations

from dataclasses import dataclass, field

from td3rec.config import check_values
from td3rec.errors import ConfigError
from td3rec.evaluation.evaluator import EvalConfig
from td3rec.models.registry import make_model_config, max_input_length
from td3rec.summary.farzi import FARZI_DECODERS
from td3rec.utils.device import resolve_device
from td3rec.utils.precision import check_precision

INIT_PROTOCOLS = ("reference", "shared-item-factor", "scratch")
RESET_MODES = ("epoch", "step", "random")
#: where a learner start comes from: the teacher's trajectory (reference) or the validation learners' protocol
LEARNER_STARTS = ("trajectory", "protocol")
#: how a summary starts: near-uniform noise, or fitted to one of the real-subset baselines
INIT_SOURCES = ("noise", "longest", "random", "popular", "herding", "kcenter")
#: what a time budget counts: wall-clock seconds, or the process's CPU seconds
BUDGET_CLOCKS = ("wall", "cpu")
#: summary parameterisations: TD3's Tucker factors, or Farzi Data's latent summary and decoder
METHODS = ("td3", "farzi")


@dataclass
class InnerConfig:
    """The inner problem: training a learner on the synthetic summary.

    Attributes:
        optimizer: ``adam`` (reference) or ``sgd``.
        lr: inner learning rate (reference 0.005).
        weight_decay: inner L2 weight decay (reference 5e-5).
        momentum: SGD momentum (ignored by Adam).
        batch_size: synthetic sequences per inner step (reference 15), taken in a fixed cyclic order.
        augment: add the random-cut-position objective to the last-position objective (TD3 augmentation).
        freeze_item_embedding: keep the learner's item embedding fixed during inner steps (the reference
            configuration asked for it but its code never froze it).
        negatives: the learner's normaliser ``logsumexp(h E^T)`` in inner steps estimated from the target
            position's items (its support) plus this many uniformly sampled negatives (log-Q corrected); 0 =
            exact over every item (reference). Makes an inner step independent of the catalogue size.
        augment_by_model: per-architecture override of ``augment`` (e.g. ``{gru4rec: false}``), for the inner
            learners and the validation learners of a multi-architecture distillation: the random-cut
            augmentation comes from causal attention and need not suit every learner.
    """

    optimizer: str = "adam"
    lr: float = 0.005
    weight_decay: float = 5e-5
    momentum: float = 0.0
    batch_size: int = 15
    augment: bool = True
    freeze_item_embedding: bool = False
    negatives: int = 0
    augment_by_model: dict[str, bool] = field(default_factory=dict)

    def augment_for(self, arch: str) -> bool:
        """Whether learners of ``arch`` train with the random-cut augmentation."""
        return bool(self.augment_by_model.get(arch, self.augment))


@dataclass
class DistillConfig:
    """TD3 distillation (and Farzi Data through the same bi-level loop).

    Attributes:
        method: summary parameterisation: ``td3`` (Tucker factors U, T, G over the fixed V) or ``farzi``
            (a latent ``n × L × farzi_latent_dim`` summary times a learned decoder; :mod:`td3rec.summary.farzi`).
        farzi_latent_dim: Farzi's latent width d.
        farzi_decoder: ``factorised`` (decoder = D · V^T with a learned ``d × d3`` D: the read-out never builds
            ``n × L × |I|``) or ``full`` (a learned ``d × |I|`` decoder, read out by the plain materialised softmax).
        model: distillation architecture (the learner in the inner loop and the teacher), default sasrec; several
            separated by commas (``sasrec,gru4rec,narm,bert4rec``) distil one summary through all of them
            (multi-architecture distillation: one teacher per architecture, each learner from its own teacher's
            trajectory and aligned to its own teacher's features; the item factor V is the first one's teacher's
            item embedding, which fixes only the summary's item distributions, so the learners' widths may
            differ). The first architecture is the summary's primary one (its teacher and V).
        learners_per_step: learners (architectures) trained per outer step, the outer step's meta-batch: step t
            trains architectures ``t·m, t·m + 1, …, t·m + m − 1`` (mod their number; round-robin) and the
            meta-gradient is the mean of theirs; 0 = every architecture at every step.
        max_len: real input length L used by the teacher and the real batches.
        n_sequences: synthetic sequences n (reference ML-100k 30).
        seq_len: synthetic sequence length (reference ML-100k 50).
        d1: user-factor rank; d2: temporal-factor rank (d3 = teacher hidden size, from V); TD3 only.
        init_std: standard deviation of the normal initialisation of U and T (G: N(0, 2/(d2·d3)), as the reference).
        learn_item_factor: learn V instead of keeping the teacher's item embedding (ablation; for Farzi only with
            the factorised decoder).
        item_factor_scale: the summary's item factor is the teacher's item embedding times this (the logits'
            other factor is divided by it at the start, so the initial distributions do not change). Under the
            shared-item-factor protocol a learner's item embedding starts from V, and 200 Adam steps move every
            row by about as much as its norm (Beauty: 0.6-0.8 against 0.7), most of all for the items the summary
            never shows; a larger V keeps what the teacher knew (measured in docs/large-catalogues.md).
            Real subsets judged beside the summary use the same V.
        meta_item_factor: V also learns as the learners' starting item embedding (the shared-item-factor
            protocol starts every validation learner's item embedding from V, and training drifts it): the outer
            loss's gradient with respect to the inner learner's item embedding at the start of the RaT-BPTT window
            is added to V's (first order: the plain steps before the window count as the identity). Needs
            ``learn_item_factor``, ``learner_start=protocol`` and ``eval_init=shared-item-factor``; TD3 only.
        init_from: how the summary starts: ``noise`` (near-uniform, the reference) or a real subset of ``n_sequences``
            users (``longest``, ``random``, ``popular``, ``herding``, ``kcenter``; the baselines of
            :mod:`td3rec.summary.real_subset`), fitted so that every position's distribution puts its mass on the
            real item there (:mod:`td3rec.summary.fit`); the fit's time is charged to ``time_budget``.
        init_fit_steps: Adam steps of that fit.
        inner: inner-loop settings.
        inner_steps: maximum unroll length (reference 200).
        window: steps kept in the graph at the end of each unroll (reference 40); ``window == inner_steps``
            disables RaT-BPTT (fixed full unroll).
        random_unroll: draw the unroll length uniformly in ``[window, inner_steps]`` each outer step
            (RaT-BPTT); false = always ``inner_steps``.
        reset: learner start reset: ``epoch`` (random teacher checkpoint once per outer epoch, reference),
            ``step`` (every outer step) or ``random`` (random initialisation every outer epoch).
        learner_start: where the inner learner starts at each reset: ``trajectory`` (a random checkpoint of the
            teacher's trajectory, reference) or ``protocol`` (a fresh learner initialised like the validation
            learners, by ``eval_init``: V as item embedding and random other weights for shared-item-factor,
            every weight random for scratch): the summary is then optimised for the learners it is judged by,
            which start from scratch rather than from a trained model. ``reset=random`` ignores it.
        trajectory_epochs: ``[first, last]`` teacher epochs to draw learner starts from (reference 5..30).
        real_batch_size: real examples per outer step (reference 4096).
        feature_weight: λ, weight of the MSE to the teacher's features (0 = no feature alignment).
        outer_lr / outer_weight_decay: Adam on U, T, G (reference 0.03, 1e-4), cosine schedule.
        grad_clip: gradient-norm clip of the outer update (reference 1.0; 0 = off).
        balance_gradients: divide each outer step's meta-gradient by max(its norm, the median norm of the last
            ``balance_window`` steps that trained the same architectures) before the clip, so that every
            architecture moves the summary by comparable amounts and a spike (an exploding unroll) counts as
            one ordinary step (:mod:`td3rec.distill.balance`); off = the reference's plain clip.
        balance_window: steps of each architecture (meta-batch) whose median norm ``balance_gradients`` uses.
        epochs: outer epochs (passes over the real training examples; reference 30).
        max_steps: stop after this many outer steps in total (0 = no limit), for short runs.
        eval_every: validate every this many outer epochs (0 = only at the end).
        eval_init: initialisation protocol of the validation learners (see DESIGN §5).
        eval_learners: number of validation learners (seeds) averaged per validation.
        eval_steps: training steps of each validation learner (reference 200).
        select_metric: ``PROTOCOL:METRIC`` that picks the best summary (reference uni100:MRR@10).
        chunk_size: item-chunk size of the read-out and logsumexp (None = one chunk).
        checkpoint_every: write the resumable checkpoint (``resume.pt``) every this many outer steps, and at
            every epoch end (0 = only at epoch ends); ``td3rec distill --resume RUN_DIR`` continues from it.
        max_nonfinite_steps: stop the run (exit code 3) after this many outer steps in a row whose loss or
            meta-gradient was NaN/inf (each such step is skipped and counted; 0 = never stop).
        seed: random seed.
        device: auto, cpu or cuda.
        precision: ``fp32`` (default) or ``bf16``: autocast of the learner work (inner steps and the
            real-batch loss); the summary, parameters and optimiser states stay float32
            (:mod:`td3rec.utils.precision`).
        support_size: k, the summary's top-k support per synthetic position: each position's distribution is the
            softmax over its k highest-scoring items, re-selected every outer step (0 = every item, the dense
            summary of the reference). Stored in the summary file; every reader applies it.
        support_refresh: the top-k supports are re-selected over the whole catalogue once every this many outer
            steps, one slice of it per step: every step re-scores each position's current support with the
            current factors and merges in the best items of the next ``|I| / support_refresh`` (1 = an exact
            selection every step). Spreads the selection's ``n · L · |I|`` scores on very large catalogues.
        outer_negatives: the real batch's cross-entropy normaliser estimated from the target plus this many
            uniformly sampled negatives shared by the batch (log-Q corrected); 0 = exact over every item.
        time_budget: wall-clock seconds for the whole distillation (0 = no budget): the number of outer steps is
            planned to fit (teacher training excluded), the cosine schedule spans them, and the run stops at
            the budget with its best summary.
        time_budget_clock: what ``time_budget`` counts: ``wall`` (wall-clock seconds) or ``cpu`` (the process's
            CPU seconds: with one thread, one-core seconds that other work on the machine does not eat into, so
            runs made side by side on a shared machine get equal budgets; one process only).
        eval: metric settings for validation.
    """

    method: str = "td3"
    farzi_latent_dim: int = 8
    farzi_decoder: str = "factorised"
    model: str = "sasrec"
    learners_per_step: int = 0
    max_len: int = 50
    n_sequences: int = 30
    seq_len: int = 50
    d1: int = 8
    d2: int = 8
    init_std: float = 0.02
    learn_item_factor: bool = False
    item_factor_scale: float = 1.0
    meta_item_factor: bool = False
    init_from: str = "noise"
    init_fit_steps: int = 200
    inner: InnerConfig = field(default_factory=InnerConfig)
    inner_steps: int = 200
    window: int = 40
    random_unroll: bool = True
    reset: str = "epoch"
    learner_start: str = "trajectory"
    trajectory_epochs: tuple[int, int] = (5, 30)
    real_batch_size: int = 4096
    feature_weight: float = 1.0
    outer_lr: float = 0.03
    outer_weight_decay: float = 1e-4
    grad_clip: float = 1.0
    balance_gradients: bool = False
    balance_window: int = 25
    epochs: int = 30
    max_steps: int = 0
    eval_every: int = 1
    eval_init: str = "reference"
    eval_learners: int = 1
    eval_steps: int = 200
    select_metric: str = "uni100:MRR@10"
    chunk_size: int | None = None
    checkpoint_every: int = 10
    max_nonfinite_steps: int = 5
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    support_size: int = 0
    support_refresh: int = 1
    outer_negatives: int = 0
    time_budget: float = 0.0
    time_budget_clock: str = "wall"
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        """Reject impossible or inconsistent settings before any work starts."""
        check_values(self)  # every number finite and in range, whatever the field
        check_precision(self.precision)
        positive = ("max_len", "n_sequences", "seq_len", "d1", "d2", "inner_steps", "window", "real_batch_size",
                    "epochs", "eval_learners", "eval_steps", "balance_window")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.farzi_decoder not in FARZI_DECODERS:
            raise ConfigError(f"farzi_decoder must be one of {', '.join(FARZI_DECODERS)}, not {self.farzi_decoder!r}")
        if self.farzi_latent_dim <= 0:
            raise ConfigError(f"farzi_latent_dim must be positive, got {self.farzi_latent_dim}")
        if self.method == "farzi" and self.farzi_decoder == "full" and self.learn_item_factor:
            raise ConfigError("learn_item_factor applies to TD3 and to Farzi's factorised decoder; the full decoder "
                              "has no item factor in its read-out")
        archs = self.architectures
        for arch in archs:
            make_model_config(arch)  # unknown architecture -> ConfigError
        if len(set(archs)) != len(archs):
            raise ConfigError(f"model lists an architecture twice: {self.model!r}")
        if not 0 <= self.learners_per_step <= len(archs):
            raise ConfigError(f"learners_per_step must be between 0 (every architecture) and the number of "
                              f"architectures ({len(archs)}), got {self.learners_per_step}")
        for arch, flag in self.inner.augment_by_model.items():
            if arch not in archs:
                raise ConfigError(f"inner.augment_by_model names {arch!r}, which is not one of the distillation's "
                                  f"architectures ({', '.join(archs)})")
            if not isinstance(flag, bool):
                raise ConfigError(f"inner.augment_by_model.{arch} must be true or false, got {flag!r}")
        resolve_device(self.device)
        if self.inner.batch_size <= 0 or self.inner.lr <= 0:
            raise ConfigError("inner.batch_size and inner.lr must be positive")
        if self.inner.batch_size > self.n_sequences:
            raise ConfigError(f"inner.batch_size {self.inner.batch_size} exceeds n_sequences {self.n_sequences}")
        if self.window > self.inner_steps:
            raise ConfigError(f"window {self.window} is larger than inner_steps {self.inner_steps}")
        if self.seq_len < 2:
            raise ConfigError("seq_len must be at least 2 (one input position and one target)")
        if self.inner.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"inner.optimizer must be adam or sgd, not {self.inner.optimizer!r}")
        if self.inner.optimizer == "adam" and self.inner.momentum:
            raise ConfigError(f"inner.momentum {self.inner.momentum} applies to inner.optimizer=sgd only; Adam has no "
                              "momentum setting (set inner.optimizer=sgd, or drop inner.momentum)")
        if self.reset not in RESET_MODES:
            raise ConfigError(f"reset must be one of {', '.join(RESET_MODES)}, not {self.reset!r}")
        if not self.item_factor_scale > 0:
            raise ConfigError(f"item_factor_scale must be > 0, got {self.item_factor_scale}")
        if self.meta_item_factor and not (self.learn_item_factor and self.learner_start == "protocol"
                                          and self.eval_init == "shared-item-factor" and self.method == "td3"):
            raise ConfigError("meta_item_factor learns V as the learners' starting item embedding: it needs "
                              "learn_item_factor=true, learner_start=protocol, eval_init=shared-item-factor and "
                              "method td3")
        if self.init_from not in INIT_SOURCES:
            raise ConfigError(f"init_from must be one of {', '.join(INIT_SOURCES)}, not {self.init_from!r}")
        if self.init_fit_steps < 0 or (self.init_from != "noise" and self.init_fit_steps < 1):
            raise ConfigError(f"init_fit_steps must be >= 1 to fit the summary to init_from={self.init_from!r}, got "
                              f"{self.init_fit_steps}" if self.init_from != "noise" else
                              f"init_fit_steps must be >= 0, got {self.init_fit_steps}")
        if self.learner_start not in LEARNER_STARTS:
            raise ConfigError(f"learner_start must be one of {', '.join(LEARNER_STARTS)}, not {self.learner_start!r}")
        if self.eval_init not in INIT_PROTOCOLS:
            raise ConfigError(f"eval_init must be one of {', '.join(INIT_PROTOCOLS)}, not {self.eval_init!r}")
        if self.feature_weight < 0 or self.outer_lr <= 0 or self.grad_clip < 0 or self.max_steps < 0:
            raise ConfigError("feature_weight, grad_clip and max_steps must be >= 0 and outer_lr > 0")
        if len(self.trajectory_epochs) != 2:
            raise ConfigError(f"trajectory_epochs must be [first, last], got {list(self.trajectory_epochs)}")
        first, last = self.trajectory_epochs
        if first < 1 or last < first:
            raise ConfigError(f"trajectory_epochs must be [first, last] with 1 <= first <= last, got {self.trajectory_epochs}")
        self.eval.check_metric(self.select_metric, "select_metric")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise ConfigError("chunk_size must be positive or None")
        for name in ("init_std", "outer_weight_decay", "eval_every", "checkpoint_every", "max_nonfinite_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, value in (("support_size", self.support_size), ("outer_negatives", self.outer_negatives),
                            ("inner.negatives", self.inner.negatives), ("time_budget", self.time_budget)):
            if not value >= 0:  # (also rejects NaN)
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.time_budget_clock not in BUDGET_CLOCKS:
            raise ConfigError(f"time_budget_clock must be one of {', '.join(BUDGET_CLOCKS)}, not "
                              f"{self.time_budget_clock!r}")
        if self.support_refresh < 1:
            raise ConfigError(f"support_refresh must be >= 1, got {self.support_refresh}")
        if self.support_size and self.method == "farzi" and self.farzi_decoder == "full":
            raise ConfigError("support_size applies to TD3 and Farzi's factorised decoder, not the full decoder")
        if self.inner.weight_decay < 0 or self.inner.momentum < 0:
            raise ConfigError("inner.weight_decay and inner.momentum must be >= 0")

    @property
    def architectures(self) -> list[str]:
        """The distillation's architectures, in order (``model`` split at commas); the first is the primary one."""
        return [name.strip() for name in str(self.model).split(",")]

    @property
    def meta_batch_size(self) -> int:
        """Learners trained per outer step (``learners_per_step``, 0 = every architecture)."""
        return self.learners_per_step or len(self.architectures)

    def meta_batch(self, step: int) -> list[int]:
        """Indices of the architectures outer step ``step`` (0-based) trains: a round-robin meta-batch."""
        count, size = len(self.architectures), self.meta_batch_size
        return [(step * size + j) % count for j in range(size)]

    def check_learner(self, model: str, learner_max_len: int) -> None:
        """Reject a summary or real input longer than the learner's position table (SASRec, BERT4Rec): the
        learner is ``model`` built with ``learner_max_len`` (the teacher's, when one is given)."""
        limit = max_input_length(model, learner_max_len)
        if limit is None:
            return
        if self.seq_len > limit:
            raise ConfigError(f"seq_len {self.seq_len} is longer than the {model} learner accepts (max_len "
                              f"{learner_max_len}, its position table); use --seq-len <= {limit}")
        if self.max_len > limit:
            raise ConfigError(f"max_len {self.max_len} is longer than the {model} teacher accepts (it was trained "
                              f"with max_len {learner_max_len}); set max_len <= {limit}")


#: catalogues larger than this get the large-catalogue defaults of :func:`size_defaults`
LARGE_CATALOGUE = 5000


#: catalogues larger than this also get :data:`HUGE_CATALOGUE_SETTINGS`
HUGE_CATALOGUE = 100_000


def size_defaults(n_items: int) -> dict[str, object]:
    """Settings (dotted keys) that ``td3rec distill`` uses for a catalogue of ``n_items`` unless the user sets
    them; measured on Amazon Beauty (12,101 items) and generated catalogues up to 10^6 items, see README
    "Large catalogues". Small catalogues keep the TD3 reference settings of :class:`DistillConfig`."""
    if n_items <= LARGE_CATALOGUE:
        return {}
    sweep = {"support_refresh": -(-n_items // SWEEP_SLICE)} if n_items > SWEEP_SLICE else {}
    if n_items <= HUGE_CATALOGUE:
        return {**LARGE_CATALOGUE_SETTINGS, **sweep}
    return {**LARGE_CATALOGUE_SETTINGS, **HUGE_CATALOGUE_SETTINGS, **sweep}


#: the large-catalogue settings (measured on Beauty; docs/large-catalogues.md, benchmarks/results/diagnosis/): a
#: top-64 support per position, sampled normalisers, short RaT-BPTT windows and real batches (speed), the reference
#: outer learning rate (0.3, right for ~33 steps, made the outer loss climb over a 30-minute run), selection by
#: the full-ranking metric under the protocol the summaries are judged by, inner learners that start like those
#: learners (V + random weights) afresh at every outer step and unroll up to their 200 steps, and V scaled by 16
#: so that the learners' item embeddings keep the teacher's knowledge through their training (quality)
LARGE_CATALOGUE_SETTINGS: dict[str, object] = {
    "support_size": 64,
    "inner.negatives": 512,
    "outer_negatives": 2048,
    "inner_steps": 200,
    "window": 20,
    "real_batch_size": 1024,
    "outer_lr": 0.03,
    "select_metric": "full:NDCG@10",
    "eval_init": "shared-item-factor",
    "learner_start": "protocol",
    "reset": "step",
    "item_factor_scale": 16.0,
}


#: beyond this many items the supports sweep the catalogue in slices of about this size, one per outer step
#: (``support_refresh = ceil(|I| / SWEEP_SLICE)``): a full selection scores n · L · |I| pairs
#: (catalogue_scale_large.md: 10^6 items with 10 slices still cost 5x a 10^4 step)
SWEEP_SLICE = 20_000

#: on top of the large-catalogue settings, beyond 10^5 items: the learner's item embedding is fixed in the inner loop (a
#: trainable |I| × H table costs an Adam update of the whole table per inner step and a copy per window step:
#: ~10 GB at 10^6 items). Measured trade: on Beauty a frozen embedding distilled far worse summaries
#: (docs/large-catalogues.md), so it is kept for the sizes where memory forces it.
HUGE_CATALOGUE_SETTINGS: dict[str, object] = {
    "inner.freeze_item_embedding": True,
}


def apply_size_defaults(config: DistillConfig, n_items: int, explicit: dict) -> DistillConfig:
    """``config`` with :func:`size_defaults` for every setting the user did not give (``explicit``: the nested
    mapping of settings from the config file, ``--set`` and flags); validated."""
    from td3rec.config import from_dict, to_dict

    data = to_dict(config)
    for key, value in size_defaults(n_items).items():
        *parents, leaf = key.split(".")
        given, node = explicit, data
        for part in parents:
            given = given.get(part, {}) if isinstance(given, dict) else {}
            node = node[part]
        if not (isinstance(given, dict) and leaf in given):
            node[leaf] = value
    resolved = from_dict(DistillConfig, data)
    resolved.validate()
    return resolved
