"""Seconds per TD3 outer step on a large catalogue (Amazon Beauty, 12,101 items), settings side by side.

Each variant is a set of distillation settings (``key=value`` overrides of ``DistillConfig``, as in
``td3rec distill --set``); all variants run the same outer steps interleaved (round r: every variant, in
turn, with the same unroll length and generator seed), so they see the same machine load and the ratios are
fair. The learner starts from the teacher's best checkpoint (``--teacher``) or a fresh SASRec; the real batch
is drawn from the real training prefixes and the teacher's features on it are the targets. One outer step is
what the distiller does per step: top-k support selection (if any), the RaT-BPTT unroll, the real-batch loss,
and the meta-backward.

    OMP_NUM_THREADS=1 TD3REC_DATA_DIR=../shared/data python benchmarks/large_catalogue_speed.py \\
        --teacher runs/teacher-beauty --rounds 5 \\
        --variant reference: \\
        --variant "large:support_size=64,inner.negatives=512,outer_negatives=2048,..."

Writes ``benchmarks/results/NAME.json`` and ``.md`` (``--name``, default ``large_catalogue_speed``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from td3rec.config import load_config, to_dict
from td3rec.data import load_dataset
from td3rec.data.sequences import leave_one_out, prefix_examples
from td3rec.distill.config import DistillConfig
from td3rec.distill.distiller import outer_loss
from td3rec.distill.inner_loop import InnerLoop
from td3rec.models import build_model
from td3rec.summary.support import draw_negatives, top_k_support
from td3rec.summary.tucker import TuckerConfig, TuckerSummary
from td3rec.training.checkpoint import load_checkpoint
from td3rec.utils.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"


def variant_config(spec: str) -> tuple[str, DistillConfig]:
    """``NAME:key=value,key=value`` -> (name, config with those overrides of the defaults)."""
    name, _, body = spec.partition(":")
    return name, load_config(DistillConfig, None, [item for item in body.split(",") if item])


def outer_step(model, start: dict, summary: TuckerSummary, batch, feats, n_unroll: int, cfg: DistillConfig,
               generator: torch.Generator) -> float:
    """One outer step as the distiller takes it (no optimiser update: the summary stays the same for all)."""
    n_items = summary.item_factor.shape[0]
    inner = InnerLoop(model, cfg.inner, cfg.n_sequences, cfg.chunk_size, cfg.precision)
    W = summary.core_product()
    k = cfg.support_size if 0 < cfg.support_size < n_items else 0
    support = top_k_support(W, summary.item_factor, k) if k else None
    state = inner.unroll(inner.start(start), W, summary.item_factor, n_unroll, cfg.window, generator, support)
    negatives = draw_negatives(n_items, cfg.outer_negatives, generator, "cpu") if cfg.outer_negatives else None
    rows = torch.randperm(len(batch), generator=generator)[: cfg.real_batch_size]
    model.eval()
    loss, _, _ = outer_loss(model, state.params, batch.subset(rows).trimmed(), feats[rows], cfg.feature_weight,
                            cfg.chunk_size, cfg.precision, negatives)
    loss.backward()
    model.train()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--teacher", help="a `td3rec train` run folder of the dataset (default: a fresh SASRec)")
    parser.add_argument("--variant", action="append", required=True, help="NAME:key=value,... (repeatable)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after one warm-up round)")
    parser.add_argument("--unroll", type=int, default=0,
                        help="fixed unroll length (default: one uniform draw per round, mapped to each variant's "
                             "own range [window, inner_steps])")
    parser.add_argument("--name", default="large_catalogue_speed")
    args = parser.parse_args()
    variants = [variant_config(v) for v in args.variant]
    torch.manual_seed(0)
    dataset = load_dataset(args.dataset)
    examples = prefix_examples(leave_one_out(dataset), variants[0][1].max_len)
    pool = examples.subset(torch.randperm(len(examples))[: max(c.real_batch_size for _, c in variants)])
    if args.teacher:
        model, _ = load_checkpoint(Path(args.teacher) / "best.pt", "cpu")
    else:
        model = build_model("sasrec", dataset.n_items, variants[0][1].max_len)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        model.eval()
        feats = model.features(pool.inputs, pool.lengths)
        model.train()
    summaries = {name: TuckerSummary(TuckerConfig(n_sequences=c.n_sequences, seq_len=c.seq_len, d1=c.d1, d2=c.d2),
                                     model.item_vectors().detach().clone(), generator=torch.Generator().manual_seed(0))
                 for name, c in variants}
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    unrolls = []
    for r in range(args.rounds + 1):  # round 0 is a warm-up
        u = float(torch.rand(1, generator=torch.Generator().manual_seed(r)))
        line, lengths = [], {}
        for name, cfg in variants:
            n_unroll = args.unroll or cfg.window + min(int(u * (cfg.inner_steps - cfg.window + 1)),
                                                       cfg.inner_steps - cfg.window)
            lengths[name] = n_unroll
            summaries[name].zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            outer_step(model, start, summaries[name], pool, feats, n_unroll, cfg,
                       torch.Generator().manual_seed(100 + r))
            seconds = time.perf_counter() - t0
            if r > 0:
                times[name].append(seconds)
            line.append(f"{name} {seconds:.2f} s (unroll {n_unroll})")
        unrolls.append(lengths)
        print(f"round {r}: " + ", ".join(line), flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    base = variants[0][0]
    out = {"command": " ".join(["python"] + sys.argv), "torch": torch.__version__, "platform": platform.platform(),
           "threads": torch.get_num_threads(), "dataset": dataset.name, "n_items": dataset.n_items,
           "teacher": args.teacher, "unrolls": unrolls[1:],
           "variants": {name: to_dict(cfg) for name, cfg in variants}, "seconds": times, "median_seconds": med,
           "speedup_vs_first": {name: med[base] / m for name, m in med.items()}}
    rows = "\n".join(f"| {name} | `{spec.partition(':')[2] or '(defaults)'}` | {med[name]:.2f} | "
                     f"{med[base] / med[name]:.2f}× |" for (name, _), spec in zip(variants, args.variant))
    md = (f"# Seconds per TD3 outer step on {dataset.name} ({dataset.n_items:,} items)\n\n"
          f"Command: `{out['command']}`  \n"
          f"torch {out['torch']}, {out['threads']} thread(s), {out['platform']}; {args.rounds} rounds after a warm-up, "
          f"variants interleaved within each round (one uniform draw per round mapped to each variant's unroll range "
          f"[window, inner_steps], same seeds); unrolls per round {unrolls[1:]}.\n\n"
          f"| variant | settings (over the reference defaults) | median s / outer step | speed-up vs {base} |\n"
          f"|---|---|---|---|\n{rows}\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{args.name}.json", out)
    write_text(RESULTS / f"{args.name}.md", md)
    print(md)


if __name__ == "__main__":
    main()
