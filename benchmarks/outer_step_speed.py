"""One TD3 outer step: td3rec against a naive implementation kept here, side by side in one run.

The naive path does what the reference research code does: at every inner step it rebuilds the whole soft
summary ``softmax(einsum(G, U, T, V))`` (n × L × |I|) and keeps it for back-propagation, feeds ``S @ E`` to a
learner that computes the hidden states of every position and gathers one, and takes cross-entropies from
materialised log-softmax tables. Both paths use the same learner weights, real batch, unroll lengths and
functional Adam, so the ratio measures the implementation only.

    TD3REC_DATA_DIR=../shared/data python benchmarks/outer_step_speed.py --steps 10

Writes ``benchmarks/results/outer_step_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from td3rec.config import load_config
from td3rec.data import load_dataset
from td3rec.data.sequences import leave_one_out, prefix_examples
from td3rec.distill.config import DistillConfig
from td3rec.distill.distiller import outer_loss
from td3rec.distill.functional_optim import make_functional_optimizer
from td3rec.distill.inner_loop import EMBEDDING_KEY, InnerLoop
from td3rec.models import build_model
from td3rec.models.positions import gather_positions
from td3rec.summary.support import draw_negatives, top_k_support
from td3rec.summary.tucker import TuckerConfig, TuckerSummary
from td3rec.utils.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"


def naive_outer_step(model, start: dict, summary: TuckerSummary, batch, teacher_feats, n_steps: int, window: int,
                     cfg: DistillConfig, generator: torch.Generator) -> float:
    """The reference-style outer step; returns its outer loss (after back-propagating into the summary)."""
    opt = make_functional_optimizer("adam", lr=cfg.inner.lr, weight_decay=cfg.inner.weight_decay)
    params = {k: v.detach().clone().requires_grad_() for k, v in start.items()}
    state = opt.init(params)
    n, L, b = cfg.n_sequences, cfg.seq_len, cfg.inner.batch_size
    for step in range(n_steps):
        graph = step >= n_steps - window
        S = torch.softmax(torch.einsum("jkl,aj,bk,il->abi", summary.G, summary.U, summary.T, summary.V), -1)
        if not graph:
            S = S.detach()
        rows = (torch.arange(b) + step * b) % n
        E = params[EMBEDDING_KEY][1 : model.n_items + 1]
        probs = S[rows]
        x = probs @ E
        full = torch.full((b,), L)
        cuts = 1 + (torch.rand(b, generator=generator) * (L - 1)).long().clamp(max=L - 2)
        losses = []
        for lengths in (full - 1, cuts):
            h = _features(model, params, x, lengths)
            logp = torch.log_softmax(h @ E.T, -1)
            losses.append(-(probs[torch.arange(b), lengths] * logp).sum(-1).mean())
        loss = 0.5 * (losses[0] + losses[1])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=graph)
        new, state = opt.step(params, dict(zip(params, grads)), state)
        params = new if graph else {k: v.detach().requires_grad_() for k, v in new.items()}
    model.eval()
    table = params[EMBEDDING_KEY]
    h = _features(model, params, F.embedding(batch.inputs, table), batch.lengths)
    logits = h @ table[1 : model.n_items + 1].T
    loss = F.cross_entropy(logits, batch.targets - 1) + F.mse_loss(h, teacher_feats)
    loss.backward()
    model.train()
    return float(loss.detach())


def _features(model, params, x, lengths):
    """The naive learner: hidden states of every position (as RecBole's SASRec), gathered at ``lengths - 1``."""
    wrapped = {f"m.{k}": v for k, v in params.items()}
    states = functional_call(_HiddenStates(model), wrapped, (x, lengths))
    return gather_positions(states, lengths - 1)


class _HiddenStates(torch.nn.Module):
    """Wraps a learner so that ``functional_call`` runs its full ``hidden_states``."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x, lengths):
        return self.m.hidden_states(x, lengths)


def ours_outer_step(model, start, summary, batch, teacher_feats, n_steps, window, cfg, generator) -> float:
    inner = InnerLoop(model, cfg.inner, cfg.n_sequences, cfg.chunk_size)
    state = inner.start(start)
    W = summary.core_product()
    n_items = summary.item_factor.shape[0]
    support = top_k_support(W, summary.item_factor, cfg.support_size) if 0 < cfg.support_size < n_items else None
    state = inner.unroll(state, W, summary.item_factor, n_steps, window, generator, support)
    negatives = draw_negatives(n_items, cfg.outer_negatives, generator, "cpu") if cfg.outer_negatives else None
    model.eval()
    loss, _, _ = outer_loss(model, state.params, batch, teacher_feats, cfg.feature_weight, cfg.chunk_size,
                            negatives=negatives)
    loss.backward()
    model.train()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="outer steps per implementation")
    parser.add_argument("--unroll", type=int, default=120, help="inner steps per outer step (mean of U[40,200])")
    parser.add_argument("--variant", action="append", default=[],
                        help="also time td3rec at other settings: NAME:key=value,... (repeatable; e.g. "
                             "sparse:support_size=64,inner.negatives=512,outer_negatives=2048,"
                             "inner.freeze_item_embedding=true)")
    parser.add_argument("--name", default="outer_step_speed")
    args = parser.parse_args()
    cfg = DistillConfig()
    variants = {name: load_config(DistillConfig, None, [x for x in body.split(",") if x])
                for name, _, body in (v.partition(":") for v in args.variant)}
    impls = {"td3rec": (ours_outer_step, cfg), "naive": (naive_outer_step, cfg),
             **{f"td3rec {name}": (ours_outer_step, c) for name, c in variants.items()}}
    torch.manual_seed(0)
    dataset = load_dataset("ml-100k")
    examples = prefix_examples(leave_one_out(dataset), cfg.max_len)
    batch = examples.subset(torch.randperm(len(examples))[: cfg.real_batch_size])
    model = build_model("sasrec", dataset.n_items, cfg.max_len)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        model.eval()
        teacher_feats = model.features(batch.inputs, batch.lengths) + 0.1 * torch.randn(len(batch), 32)
        model.train()
    summary = TuckerSummary(TuckerConfig(n_sequences=cfg.n_sequences, seq_len=cfg.seq_len, d1=cfg.d1, d2=cfg.d2),
                            model.item_vectors().detach().clone(), generator=torch.Generator().manual_seed(0))
    times = {name: [] for name in impls}
    losses = {name: [] for name in impls}
    for step in range(args.steps + 1):  # first round is warm-up
        for name, (fn, c) in impls.items():
            summary.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = fn(model, start, summary, batch, teacher_feats, args.unroll, cfg.window, c,
                      torch.Generator().manual_seed(step))
            if step > 0:
                times[name].append(time.perf_counter() - t0)
                losses[name].append(loss)
        if step:
            print(f"step {step}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"command": " ".join(["python"] + sys.argv), "torch": torch.__version__, "platform": platform.platform(),
           "threads": torch.get_num_threads(), "unroll": args.unroll, "window": cfg.window,
           "real_batch": cfg.real_batch_size, "summary": f"{cfg.n_sequences}x{cfg.seq_len}, d1=d2={cfg.d1}, d3=32",
           "seconds": times, "median_seconds": med, "speedup": med["naive"] / med["td3rec"],
           "variants": {name: args.variant[i] for i, name in enumerate(variants)},
           "speedups": {name: med["naive"] / m for name, m in med.items() if name != "naive"}}
    md = (f"# One TD3 outer step on ML-100k (reference settings)\n\nCommand: `{out['command']}`  \n"
          f"torch {out['torch']}, {out['threads']} threads, {out['platform']}; unroll {args.unroll} inner steps "
          f"(window {cfg.window}), real batch {cfg.real_batch_size}, summary {out['summary']}; "
          f"{args.steps} steps each, interleaved.\n\n| implementation | median s / outer step |\n|---|---|\n"
          f"| naive (reference-style) | {med['naive']:.2f} |\n"
          + "".join(f"| {name} | {med[name]:.2f} |\n" for name in impls if name != "naive")
          + f"\nSpeed-up of td3rec (same computation as the naive step): **{out['speedup']:.2f}×**\n"
          + "".join(f"\nSpeed-up of {name} (`{args.variant[i].partition(':')[2]}`; approximate, see README "
                    f"'Large catalogues'): **{out['speedups']['td3rec ' + name]:.2f}×**\n"
                    for i, name in enumerate(variants)))
    write_json(RESULTS / f"{args.name}.json", out)
    write_text(RESULTS / f"{args.name}.md", md)
    print(md)


if __name__ == "__main__":
    main()
