"""Peak memory and time of TD3 outer steps as the catalogue grows (generated data), td3rec vs a naive path.

Each (catalogue size, implementation) runs in its own process so that its peak RSS is its own. Settings:
n = 50 synthetic sequences × L = 50, d1 = d2 = 16, d3 = hidden = 32 (SASRec reference learner), a short
unroll (``--inner-steps``, ``--window``) and a real batch of ``--real-batch`` examples (smaller than the
4096 of the ML-100k reference; stated in the results). td3rec runs with the learner's item embedding frozen in
the inner loop (``inner.freeze_item_embedding``): with a trainable |I| × H table every differentiable step
keeps its own copy of the table in the graph, which no machine holds at |I| = 10^6. The naive path
materialises ``softmax(einsum(G, U, T, V))`` (n × L × |I|) at every inner step and computes full score tables;
it is skipped where its summary tensor alone would exceed ``--naive-limit-gb``. ``large`` is td3rec at the
settings ``td3rec distill`` picks for the catalogue size (top-k supports, re-selected every
``support_refresh`` outer steps, and sampled normalisers): its mean over ``--steps`` amortises re-selections.

    python benchmarks/catalogue_scale.py --items 10000 100000 1000000
    python benchmarks/catalogue_scale.py --items 10000 1000000 --impls large --steps 11 --name catalogue_scale_large

Writes ``benchmarks/results/catalogue_scale.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

RESULTS = Path(__file__).parent / "results"
N, L, D, HIDDEN = 50, 50, 16, 32


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def one(n_items: int, impl: str, steps: int, inner_steps: int, window: int, real_batch: int) -> dict:
    """Run ``steps`` outer steps in this process; report median seconds and peak RSS."""
    from td3rec.data.sequences import Examples
    from td3rec.distill.config import InnerConfig
    from td3rec.distill.distiller import outer_loss
    from td3rec.distill.functional_optim import make_functional_optimizer
    from td3rec.distill.config import DistillConfig, size_defaults
    from td3rec.distill.inner_loop import EMBEDDING_KEY, InnerLoop
    from td3rec.summary.support import draw_negatives, refresh_support, top_k_support
    from td3rec.models import build_model
    from td3rec.summary.tucker import TuckerConfig, TuckerSummary

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model("sasrec", n_items, L)
    lengths = torch.randint(1, L + 1, (real_batch,), generator=gen)
    ids = torch.randint(1, n_items + 1, (real_batch, L), generator=gen) * (torch.arange(L) < lengths[:, None])
    batch = Examples(ids, lengths, torch.randint(1, n_items + 1, (real_batch,), generator=gen), torch.arange(real_batch))
    teacher = torch.randn(real_batch, HIDDEN, generator=gen)
    summary = TuckerSummary(TuckerConfig(n_sequences=N, seq_len=L, d1=D, d2=D, chunk_size=8192),
                            model.item_vectors().detach().clone(), generator=gen)
    outer = torch.optim.Adam(summary.parameters(), lr=0.03)
    config = InnerConfig(freeze_item_embedding=True)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    times = []
    large = DistillConfig(**{k: v for k, v in size_defaults(n_items).items() if "." not in k})
    large_inner = InnerConfig(freeze_item_embedding=True, negatives=int(size_defaults(n_items).get("inner.negatives", 0)))
    support = None
    for step in range(steps):
        t0 = time.perf_counter()
        outer.zero_grad(set_to_none=True)
        if impl == "large":  # td3rec at the catalogue size's default settings (td3rec.distill.config.size_defaults)
            inner = InnerLoop(model, large_inner, N, chunk_size=8192)
            W = summary.core_product()
            if large.support_size:  # as the distiller: a full selection, then a slice of the catalogue per step
                support = (top_k_support(W, summary.item_factor, large.support_size) if support is None else
                           refresh_support(W, summary.item_factor, support, step % large.support_refresh,
                                           large.support_refresh))
            state = inner.unroll(inner.start(start), W, summary.item_factor, inner_steps, window,
                                 torch.Generator().manual_seed(step), support)
            model.eval()
            negatives = draw_negatives(n_items, large.outer_negatives, torch.Generator().manual_seed(step), "cpu")
            loss, _, _ = outer_loss(model, state.params, batch, teacher, 1.0, 8192, negatives=negatives)
        elif impl == "td3rec":
            inner = InnerLoop(model, config, N, chunk_size=8192)
            state = inner.unroll(inner.start(start), summary.core_product(), summary.item_factor, inner_steps,
                                 window, torch.Generator().manual_seed(step))
            model.eval()
            loss, _, _ = outer_loss(model, state.params, batch, teacher, 1.0, 8192)
        else:
            loss = naive_step(model, start, summary, batch, teacher, inner_steps, window, config,
                              make_functional_optimizer, EMBEDDING_KEY, F, functional_call)
        loss.backward()
        outer.step()
        model.train()
        times.append(time.perf_counter() - t0)
    return {"items": n_items, "impl": impl, "median_seconds": statistics.median(times[1:] or times),
            "mean_seconds": statistics.fmean(times[1:] or times), "peak_rss_gib": peak_rss_gib(), "steps": steps,
            "settings": size_defaults(n_items) if impl == "large" else {}}


def _combine(group: list[dict]) -> dict:
    """One table row from a (size, implementation)'s rounds: medians of their timings, the largest peak RSS."""
    done = [r for r in group if "median_seconds" in r]
    if not done:
        return group[0]
    return {**done[0], "median_seconds": statistics.median(r["median_seconds"] for r in done),
            "mean_seconds": statistics.median(r["mean_seconds"] for r in done),
            "peak_rss_gib": max(r["peak_rss_gib"] for r in done), "rounds": len(done),
            "round_mean_seconds": [r["mean_seconds"] for r in done]}


def naive_step(model, start, summary, batch, teacher, inner_steps, window, config, make_opt, key, F, fcall):
    """Reference-style: the whole n × L × |I| summary per inner step, full score tables."""
    opt = make_opt("adam", lr=config.lr, weight_decay=config.weight_decay)
    params = {k: v.detach().clone().requires_grad_(k != key) for k, v in start.items()}
    train_keys = [k for k in params if k != key]
    state = opt.init({k: params[k] for k in train_keys})
    b = config.batch_size
    E = params[key][1 : model.n_items + 1]
    for step in range(inner_steps):
        graph = step >= inner_steps - window
        S = torch.softmax(torch.einsum("jkl,aj,bk,il->abi", summary.G, summary.U, summary.T, summary.V), -1)
        S = S if graph else S.detach()
        rows = (torch.arange(b) + step * b) % N
        x = S[rows] @ E
        h = fcall(model, params, (x, torch.full((b,), L - 1)))
        loss = -(S[rows, L - 1] * torch.log_softmax(h @ E.T, -1)).sum(-1).mean()
        grads = torch.autograd.grad(loss, [params[k] for k in train_keys], create_graph=graph)
        new, state = opt.step({k: params[k] for k in train_keys}, dict(zip(train_keys, grads)), state)
        params = dict(params, **(new if graph else {k: v.detach().requires_grad_() for k, v in new.items()}))
    model.eval()
    h = fcall(model, params, (F.embedding(batch.inputs, params[key]), batch.lengths))
    return F.cross_entropy(h @ E.T, batch.targets - 1) + F.mse_loss(h, teacher)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--inner-steps", type=int, default=12)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--real-batch", type=int, default=256)
    parser.add_argument("--naive-limit-gb", type=float, default=2.0, help="skip the naive path above this summary size")
    parser.add_argument("--one", nargs=2, metavar=("ITEMS", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every (size, implementation) run this many times, interleaved; the table shows "
                             "the median over rounds")
    parser.add_argument("--impls", nargs="+", default=["large", "td3rec", "naive"],
                        help="large (the catalogue size's default settings), td3rec (dense, exact), naive")
    parser.add_argument("--name", default="catalogue_scale")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.steps, args.inner_steps, args.window, args.real_batch)))
        return
    runs: dict[tuple[int, str], list[dict]] = {}
    for _ in range(args.rounds):  # sizes interleaved round by round: they see the same machine load
        for n_items in args.items:
            for impl in args.impls:
                summary_gb = N * L * n_items * 4 / 2**30
                if impl == "naive" and summary_gb > args.naive_limit_gb:
                    runs[(n_items, impl)] = [{"items": n_items, "impl": impl, "skipped": f"n×L×|I| summary alone is "
                                              f"{summary_gb:.1f} GiB per copy (and the window keeps {args.window} copies)"}]
                    continue
                cmd = [sys.executable, __file__, "--one", str(n_items), impl, "--steps", str(args.steps),
                       "--inner-steps", str(args.inner_steps), "--window", str(args.window), "--real-batch", str(args.real_batch)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    result = {"items": n_items, "impl": impl, "failed": done.stderr.strip().splitlines()[-1:]}
                else:
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                runs.setdefault((n_items, impl), []).append(result)
                print(result, flush=True)
    rows = [_combine(group) for group in runs.values()]
    meta = {"command": " ".join(["python"] + sys.argv), "torch": torch.__version__, "platform": platform.platform(),
            "n": N, "L": L, "d1=d2": D, "hidden": HIDDEN, "inner_steps": args.inner_steps, "window": args.window,
            "real_batch": args.real_batch, "outer_steps": args.steps, "rounds": args.rounds}
    lines = ["# Catalogue scale: one TD3 outer step, generated data", "", f"Command: `{meta['command']}`  ",
             f"torch {meta['torch']}, {meta['platform']}; n={N}, L={L}, d1=d2={D}, hidden={HIDDEN}, unroll "
             f"{args.inner_steps} inner steps (window {args.window}), real batch {args.real_batch}, "
             f"{args.steps} outer steps per run (median and mean of all but the first; the mean amortises support "
             "re-selections); learner item embedding frozen in the inner loop. `large` = td3rec with the catalogue "
             "size's default settings (`td3rec.distill.config.size_defaults`: top-k supports, sampled normalisers); "
             "`td3rec` = dense, exact read-out and normalisers. "
             f"{args.rounds} round(s), sizes interleaved; each cell is the median over rounds of the runs' values.",
             "", "| items | implementation | settings | median s / outer step | mean s / outer step | peak RSS (GiB) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "median_seconds" in r:
            settings = ", ".join(f"{k}={v}" for k, v in r.get("settings", {}).items()
                                 if k in ("support_size", "support_refresh", "inner.negatives", "outer_negatives"))
            lines.append(f"| {r['items']:,} | {r['impl']} | {settings or 'dense'} | {r['median_seconds']:.2f} | "
                         f"{r.get('mean_seconds', r['median_seconds']):.2f} | {r['peak_rss_gib']:.2f} |")
        else:
            lines.append(f"| {r['items']:,} | {r['impl']} | | {r.get('skipped') or r.get('failed')} | | |")
    large = {r["items"]: r["mean_seconds"] for r in rows if r.get("impl") == "large" and "mean_seconds" in r}
    if len(large) > 1:
        lo, hi = min(large), max(large)
        lines += ["", f"`large`: mean seconds per outer step at {hi:,} items / at {lo:,} items = "
                      f"**{large[hi] / large[lo]:.2f}×**"]
    from td3rec.utils.atomic import write_json, write_text

    write_json(RESULTS / f"{args.name}.json", {"meta": meta, "rows": rows})
    write_text(RESULTS / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
