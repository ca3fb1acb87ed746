"""Where the time of one TD3 outer step goes, at the ML-100k reference settings.

Breaks an outer step into: summary read-out (core product + distributions), plain inner steps (no graph to the
summary), differentiable window steps, the real-batch forward (CE + feature MSE) and the meta-backward; each
part is timed separately (medians over ``--repeats``) and printed as a table.

    TD3REC_DATA_DIR=../shared/data python benchmarks/profile_outer_step.py --label after

Writes ``benchmarks/results/profile_outer_step_LABEL.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from td3rec.data import load_dataset
from td3rec.data.sequences import leave_one_out, prefix_examples
from td3rec.distill.config import DistillConfig
from td3rec.distill.distiller import outer_loss
from td3rec.distill.inner_loop import InnerLoop, LearnerState
from td3rec.models import build_model
from td3rec.summary.readout import soft_readout
from td3rec.summary.tucker import TuckerConfig, TuckerSummary
from td3rec.utils.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plain", type=int, default=80, help="plain steps per outer step (mean of U[40,200] - 40)")
    args = parser.parse_args()
    cfg = DistillConfig()
    torch.manual_seed(0)
    dataset = load_dataset("ml-100k")
    examples = prefix_examples(leave_one_out(dataset), cfg.max_len)
    batch = examples.subset(torch.randperm(len(examples))[: cfg.real_batch_size])
    model = build_model("sasrec", dataset.n_items, cfg.max_len)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    feats = torch.randn(len(batch), 32)
    summary = TuckerSummary(TuckerConfig(), model.item_vectors().detach().clone())
    inner = InnerLoop(model, cfg.inner, cfg.n_sequences)
    V = summary.item_factor

    def readout():
        W = summary.core_product()
        return soft_readout(W[:15], V, model.item_vectors().detach())

    def plain():
        inner.unroll(inner.start(start), summary.core_product().detach(), V, args.plain, 0)

    state0 = inner.start(start)

    def window_and_rest():
        W = summary.core_product()
        p = {k: v.detach().requires_grad_() for k, v in state0.params.items()}
        state = LearnerState(p, state0.opt_state, 0)
        t0 = time.perf_counter()
        for _ in range(cfg.window):
            state = inner.step(state, W, V, differentiable=True)
        t1 = time.perf_counter()
        model.eval()
        loss, _, _ = outer_loss(model, state.params, batch, feats, cfg.feature_weight, None)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        model.train()
        summary.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1, t3 - t2

    parts = {"summary read-out (one batch)": _timed(readout, args.repeats),
             f"plain inner steps (x{args.plain})": _timed(plain, args.repeats)}
    runs = [window_and_rest() for _ in range(args.repeats)]
    parts[f"window steps (x{cfg.window}, with graph)"] = statistics.median(r[0] for r in runs)
    parts["real-batch forward (4096, CE + MSE)"] = statistics.median(r[1] for r in runs)
    parts["meta-backward"] = statistics.median(r[2] for r in runs)
    total = sum(v for k, v in parts.items() if not k.startswith("summary"))
    lines = [f"# Profile of one TD3 outer step ({args.label})", "", f"Command: `{' '.join(['python'] + sys.argv)}`  ",
             f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.platform()}; ML-100k, "
             f"reference settings, {args.plain} plain + {cfg.window} window steps; medians of {args.repeats}.", "",
             "| part | seconds | share |", "|---|---|---|"]
    for k, v in parts.items():
        share = "" if k.startswith("summary") else f"{100 * v / total:.0f}%"
        lines.append(f"| {k} | {v:.3f} | {share} |")
    lines.append(f"| **outer step total** | **{total:.2f}** | |")
    text = "\n".join(lines) + "\n"
    write_json(RESULTS / f"profile_outer_step_{args.label}.json", {"label": args.label, "seconds": parts, "total": total})
    write_text(RESULTS / f"profile_outer_step_{args.label}.md", text)
    print(text)


if __name__ == "__main__":
    main()
