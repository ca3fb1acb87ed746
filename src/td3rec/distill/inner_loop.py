"""The differentiable inner loop: a learner trained on the summary with RaT-BPTT (DESIGN §4.2–4.3).

The learner is a module used through ``torch.func.functional_call`` with an explicit parameter dictionary, so
that every inner update is an ordinary tensor expression. Steps before the window run on detached tensors
(no graph to the summary); the last ``window`` steps keep the graph (``create_graph=True``), so the outer loss
back-propagates into the summary only through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call

from td3rec.distill.config import InnerConfig
from td3rec.distill.functional_optim import FunctionalOptimizer, make_functional_optimizer
from td3rec.distill.objective import draw_cut_positions, sequence_loss
from td3rec.models.base import SequentialRecommender
from td3rec.summary.readout import soft_readout
from td3rec.summary.support import draw_negatives, mix, sampled_logsumexp, support_probabilities
from td3rec.utils.precision import learner_autocast

EMBEDDING_KEY = "item_embedding.weight"

Params = dict[str, torch.Tensor]


@dataclass
class LearnerState:
    """Where the inner learner stands: its parameters, its optimiser state and its inner-step counter."""

    params: Params
    opt_state: Any
    step: int = 0

    def detached(self) -> "LearnerState":
        """A copy cut from any graph (carried from one outer step to the next)."""
        return LearnerState(_detach(self.params), _detach(self.opt_state), self.step)


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach(v) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return type(obj)(**{k: _detach(getattr(obj, k)) for k in obj.__dataclass_fields__})
    return obj


@dataclass
class SupportTables:
    """An unroll's read-out over top-k supports (:mod:`td3rec.summary.support`), gathered once: the summary is
    fixed during the plain steps, the supports for the whole outer step, and a frozen item embedding for the
    whole unroll.

    Attributes:
        support: ``[n, L, k]`` item rows of each position's support.
        keys: ``V[support]`` ``[n, L, k, d3]`` (in the graph when ``V`` is learned).
        probs: the support's probabilities ``[n, L, k]`` for the plain steps (no graph).
        values: ``E[support]`` ``[n, L, k, H]`` when the learner's item embedding is frozen, else ``None``.
        inputs: the plain steps' input vectors ``[n, L, H]`` when the embedding is frozen, else ``None``.
    """

    support: torch.Tensor
    keys: torch.Tensor
    probs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    inputs: torch.Tensor | None = None

    def select(self, take) -> "SupportTables":
        """The tables of some synthetic rows (``take`` maps an ``[n, ...]`` table to its rows)."""
        return SupportTables(*(None if t is None else take(t) for t in
                               (self.support, self.keys, self.probs, self.values, self.inputs)))


class InnerLoop:
    """Trains a learner functionally on synthetic sequences given by the core product ``W`` and item factor ``V``."""

    #: largest n · L · |I| for which the plain steps keep the summary's distributions in memory (128 MB float32)
    cache_limit: int = 2**25

    def __init__(self, model: SequentialRecommender, config: InnerConfig, n_sequences: int,
                 chunk_size: int | None = None, precision: str = "fp32") -> None:
        self.model = model
        self.precision = precision
        self.config = config
        self.n_sequences = n_sequences
        self.chunk_size = chunk_size
        self.optimizer: FunctionalOptimizer = make_functional_optimizer(
            config.optimizer, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum
        )
        names = [name for name, _ in model.named_parameters()]
        self.trainable = [n for n in names if not (config.freeze_item_embedding and n == EMBEDDING_KEY)]

    # -- state ------------------------------------------------------------------------------------
    def start(self, params: Params) -> LearnerState:
        """A fresh learner state (new optimiser state) at ``params``."""
        params = {k: v.detach().clone() for k, v in params.items()}
        return LearnerState(params, self.optimizer.init({k: params[k] for k in self.trainable}), 0)

    def rows(self, step: int) -> torch.Tensor:
        """Synthetic rows of inner step ``step``: fixed cyclic order over the summary in batches."""
        b = self.config.batch_size
        start = (step * b) % self.n_sequences
        return (torch.arange(b) + start) % self.n_sequences

    def _rows_of(self, table: torch.Tensor, step: int) -> torch.Tensor:
        """``table[self.rows(step)]``: a view when the rows do not wrap around (no copy of ``[b, L, I]``)."""
        b = self.config.batch_size
        start = (step * b) % self.n_sequences
        if start + b <= self.n_sequences:
            return table.narrow(0, start, b)
        return table[self.rows(step).to(table.device)]

    # -- one step ---------------------------------------------------------------------------------
    def loss(self, params: Params, W_rows: torch.Tensor, V: torch.Tensor, generator: torch.Generator | None,
             probs_rows: torch.Tensor | None = None, tables: SupportTables | None = None,
             differentiable: bool = True) -> torch.Tensor:
        """The augmented soft objective of the learner at ``params`` on synthetic rows with core product ``W_rows``
        (or their precomputed item distributions ``probs_rows``, for steps without graph to the summary).
        ``tables``: the rows' top-k support tables; then the read-out is over the supports (the plain steps'
        from the tables' probabilities, the window steps' from ``W_rows`` and the support keys)."""
        n_items = self.model.n_items
        E = params[EMBEDDING_KEY][1 : n_items + 1]
        support_rows = tables.support if tables is not None else None
        if tables is not None:
            values = tables.values if tables.values is not None else E[tables.support]
            if not differentiable and tables.inputs is not None:
                inputs = tables.inputs
            elif not differentiable:
                inputs = mix(tables.probs, values)
            else:
                inputs = mix(support_probabilities(W_rows, tables.keys), values)
        else:
            inputs = probs_rows @ E if probs_rows is not None else soft_readout(W_rows, V, E, self.chunk_size)
        full = torch.full((inputs.shape[0],), inputs.shape[1], dtype=torch.long, device=inputs.device)
        cuts = draw_cut_positions(full, generator) if self.config.augment else None
        normaliser = None
        if self.config.negatives > 0:
            negatives = draw_negatives(n_items, self.config.negatives, generator, inputs.device)
            normaliser = self._sampled_normaliser(E, negatives, support_rows)

        def encode(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return functional_call(self.model, params, (x, lengths))

        return sequence_loss(encode, inputs, full, E, self.config.augment, cuts, self.chunk_size, normaliser)

    @staticmethod
    def _sampled_normaliser(E: torch.Tensor, negatives: torch.Tensor, support_rows: torch.Tensor | None):
        """The learner's normaliser estimated from the target position's support (exact) and sampled negatives."""
        b = support_rows.shape[0] if support_rows is not None else None

        def normaliser(features: torch.Tensor, target_positions: torch.Tensor) -> torch.Tensor:
            if support_rows is None:
                positives = torch.zeros(features.shape[0], 0, dtype=torch.long, device=features.device)
            else:  # rows of an augmented batch repeat the b synthetic rows
                rows = torch.arange(features.shape[0], device=features.device) % b
                positives = support_rows[rows, target_positions]
            return sampled_logsumexp(features, E, positives, negatives)

        return normaliser

    def step(self, state: LearnerState, W: torch.Tensor, V: torch.Tensor, differentiable: bool,
             generator: torch.Generator | None = None, probs: torch.Tensor | None = None,
             tables: SupportTables | None = None) -> LearnerState:
        """One inner update. ``differentiable``: keep the graph (to ``W`` and through the update itself).
        ``probs``: the summary's distributions ``[n, L, I]`` when precomputed (only without graph).
        ``tables``: read the summary out over top-k supports (:meth:`support_tables`)."""
        rows = self.rows(state.step).to(W.device)
        if differentiable:
            params = state.params
        else:
            W, V = W.detach(), V.detach()  # V is learned for some summaries (learned item factor, Farzi full)
            params = {k: v.detach().requires_grad_(k in self.trainable) for k, v in state.params.items()}
        with learner_autocast(self.precision, W.device):
            loss = self.loss(params, W[rows], V, generator,
                             self._rows_of(probs, state.step) if probs is not None else None,
                             tables.select(lambda t: self._rows_of(t, state.step)) if tables is not None else None,
                             differentiable)
        grads = torch.autograd.grad(loss, [params[k] for k in self.trainable], create_graph=differentiable)
        trainable = {k: params[k] for k in self.trainable}
        grad_dict = dict(zip(self.trainable, grads))
        if differentiable:
            new, opt_state = self.optimizer.step(trainable, grad_dict, state.opt_state)
        else:
            with torch.no_grad():
                new, opt_state = self.optimizer.step(
                    {k: v.detach() for k, v in trainable.items()}, grad_dict, state.opt_state
                )
        merged = dict(params if differentiable else {k: v.detach() for k, v in params.items()})
        merged.update(new)
        return LearnerState(merged, opt_state, state.step + 1)

    def support_tables(self, params: Params, W: torch.Tensor, V: torch.Tensor, support: torch.Tensor,
                       plain: bool) -> SupportTables:
        """Gather an unroll's support tables (``plain``: there are plain steps, so their probabilities are
        needed). With a frozen item embedding the values, and the plain steps' inputs, are gathered once."""
        keys = V[support]
        probs = support_probabilities(W.detach(), keys.detach()) if plain else None
        values = inputs = None
        if EMBEDDING_KEY not in self.trainable:
            values = params[EMBEDDING_KEY][1 : self.model.n_items + 1].detach()[support]
            inputs = mix(probs, values) if plain else None
        return SupportTables(support, keys, probs, values, inputs)

    def unroll(self, state: LearnerState, W: torch.Tensor, V: torch.Tensor, n_steps: int, window: int,
               generator: torch.Generator | None = None, support: torch.Tensor | None = None,
               anchor: torch.Tensor | None = None) -> LearnerState:
        """``n_steps`` inner updates; only the last ``window`` keep the graph to ``W`` (RaT-BPTT).
        ``support [n, L, k]``: read the summary out over these top-k supports (none: over every item).
        ``anchor [I, H]``: the tensor the learner's item embedding started from (the summary's learned V): the
        window's first item embedding is tied to it with an identity Jacobian (its value unchanged), so the
        outer loss's gradient there also reaches ``anchor`` — a first-order meta-gradient of the learner's
        starting embedding that treats the plain steps before the window as the identity."""
        window = min(window, n_steps)
        probs = tables = None
        if support is not None:
            tables = self.support_tables(state.params, W, V, support, plain=n_steps > window)
        elif n_steps > window and W.shape[0] * W.shape[1] * V.shape[0] <= self.cache_limit:
            # the summary is fixed during the plain steps: read its distributions out once
            probs = torch.softmax(W.detach() @ V.detach().T, dim=-1)
        for _ in range(n_steps - window):
            state = self.step(state, W, V, differentiable=False, generator=generator, probs=probs, tables=tables)
        del probs
        if window > 0:
            params = {k: v.detach().requires_grad_(k in self.trainable) for k, v in state.params.items()}
            if anchor is not None:
                params[EMBEDDING_KEY] = tie_to_anchor(params[EMBEDDING_KEY], anchor)
            state = LearnerState(params, _detach(state.opt_state), state.step)
            for _ in range(window):
                state = self.step(state, W, V, differentiable=True, generator=generator, tables=tables)
        return state


def tie_to_anchor(table: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """``table`` (an item embedding ``[I + 1, H]``, row 0 = padding) whose rows 1..I also carry ``anchor [I, H]``'s
    gradient: the value is ``table``'s, the Jacobian to ``anchor`` the identity (a straight-through tie)."""
    tie = anchor - anchor.detach()
    return table + torch.cat([torch.zeros_like(tie[:1]), tie])


def draw_unroll_length(inner_steps: int, window: int, random_unroll: bool, generator: torch.Generator) -> int:
    """RaT-BPTT unroll length: uniform in ``[window, inner_steps]`` (or ``inner_steps`` when not random)."""
    if not random_unroll or window >= inner_steps:
        return inner_steps
    return int(torch.randint(window, inner_steps + 1, (1,), generator=generator))
