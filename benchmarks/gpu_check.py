"""GPU check: one TD3 outer step on Amazon Beauty at the large-catalogue settings, on CUDA (fp32 and bf16)
against the same step on CPU (fp32): do they agree, and how many seconds does a step take?

The same summary, learner start, real batch, unroll length, cut positions and sampled negatives are used on
every device (all draws come from CPU generators), so the outer loss and the meta-gradient with respect to
U, T, G must agree up to floating-point error in fp32 (relative difference printed; a failure above 1e-3) and
stay close in bf16 (cosine of the meta-gradients printed; bf16 is a noisy version by design, see README
``--precision``). Seconds per step are medians of ``--steps`` steps after one warm-up.

    TD3REC_DATA_DIR=../shared/data python benchmarks/gpu_check.py --steps 5

Without CUDA it says so and exits 0 after the CPU reference (so it can be run anywhere). Writes
``benchmarks/results/gpu_check.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from td3rec.config import load_config
from td3rec.data import load_dataset
from td3rec.data.sequences import leave_one_out, prefix_examples
from td3rec.distill.config import DistillConfig, size_defaults
from td3rec.distill.distiller import outer_loss
from td3rec.distill.inner_loop import InnerLoop
from td3rec.models import build_model
from td3rec.summary.support import draw_negatives, top_k_support
from td3rec.summary.tucker import TuckerConfig, TuckerSummary
from td3rec.utils.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"


def one_step(model, start: dict, summary: TuckerSummary, batch, feats, cfg: DistillConfig, n_unroll: int,
             device: torch.device, seed: int) -> tuple[float, list[torch.Tensor], float]:
    """Outer loss, meta-gradient (U, T, G; on CPU) and seconds of one outer step on ``device``."""
    model, summary = model.to(device), summary.to(device)
    summary.zero_grad(set_to_none=True)
    start = {k: v.to(device) for k, v in start.items()}
    batch, feats = batch.to(device), feats.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)  # CPU generator: the same draws on every device
    inner = InnerLoop(model, cfg.inner, cfg.n_sequences, cfg.chunk_size, cfg.precision)
    W = summary.core_product()
    support = top_k_support(W, summary.item_factor, cfg.support_size)
    state = inner.unroll(inner.start(start), W, summary.item_factor, n_unroll, cfg.window, gen, support)
    negatives = draw_negatives(summary.item_factor.shape[0], cfg.outer_negatives, gen, device)
    model.eval()
    loss, _, _ = outer_loss(model, state.params, batch, feats, cfg.feature_weight, cfg.chunk_size, cfg.precision,
                            negatives)
    loss.backward()
    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    grads = [p.grad.detach().cpu().double() for p in (summary.U, summary.T, summary.G)]
    return float(loss.detach()), grads, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--unroll", type=int, default=60, help="inner steps per outer step (mean of U[20, 100])")
    parser.add_argument("--name", default="gpu_check")
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = load_dataset(args.dataset)
    overrides = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in size_defaults(dataset.n_items).items()]
    cfg = load_config(DistillConfig, None, overrides + ["n_sequences=50"])
    examples = prefix_examples(leave_one_out(dataset), cfg.max_len)
    batch = examples.subset(torch.randperm(len(examples))[: cfg.real_batch_size]).trimmed()
    model = build_model("sasrec", dataset.n_items, cfg.max_len, hidden_dropout=0.0, attn_dropout=0.0)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        feats = model.eval().features(batch.inputs, batch.lengths)
    summary = TuckerSummary(TuckerConfig(n_sequences=cfg.n_sequences, seq_len=cfg.seq_len, d1=cfg.d1, d2=cfg.d2),
                            model.item_vectors().detach().clone(), generator=torch.Generator().manual_seed(0))
    model.train()
    devices = [("cpu", "fp32")]
    if torch.cuda.is_available():
        devices += [("cuda", "fp32"), ("cuda", "bf16")]
    results: dict[str, dict] = {}
    reference = None
    for device, precision in devices:
        run_cfg = load_config(DistillConfig, None, overrides + ["n_sequences=50", f"precision={precision}"])
        times, losses = [], []
        for step in range(args.steps + 1):
            loss, grads, seconds = one_step(model, start, summary, batch, feats, run_cfg, args.unroll,
                                            torch.device(device), seed=step)
            if step == 0 and reference is None:
                reference = (loss, grads)
            if step == 0:
                first = (loss, grads)
            else:
                times.append(seconds)
            losses.append(loss)
        ref_flat = torch.cat([g.flatten() for g in reference[1]])
        flat = torch.cat([g.flatten() for g in first[1]])
        results[f"{device}/{precision}"] = {
            "median_seconds": statistics.median(times), "loss": first[0],
            "loss_rel_diff": abs(first[0] - reference[0]) / abs(reference[0]),
            "grad_rel_diff": float((flat - ref_flat).norm() / ref_flat.norm()),
            "grad_cosine": float(torch.nn.functional.cosine_similarity(flat, ref_flat, dim=0)),
        }
        print(f"{device}/{precision}: {results[f'{device}/{precision}']}", flush=True)
    ok = all(r["grad_rel_diff"] < 1e-3 and r["loss_rel_diff"] < 1e-3 for k, r in results.items() if k.endswith("fp32"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CUDA not available)"
    out = {"command": " ".join(["python"] + sys.argv), "torch": torch.__version__, "platform": platform.platform(),
           "gpu": gpu, "dataset": dataset.name, "n_items": dataset.n_items, "unroll": args.unroll,
           "settings": overrides, "results": results, "fp32_agrees": ok}
    rows = "\n".join(f"| {k} | {r['median_seconds']:.3f} | {r['loss_rel_diff']:.2e} | {r['grad_rel_diff']:.2e} | "
                     f"{r['grad_cosine']:.4f} |" for k, r in results.items())
    md = (f"# GPU check: one TD3 outer step on {dataset.name} ({dataset.n_items:,} items)\n\n"
          f"Command: `{out['command']}`  \nGPU: {gpu}; torch {out['torch']}; unroll {args.unroll}; settings "
          f"{', '.join(overrides)}, n = 50.\n\n| device/precision | median s / step | loss rel. diff vs CPU | "
          f"meta-gradient rel. diff vs CPU | cosine |\n|---|---|---|---|---|\n{rows}\n\n"
          f"fp32 agrees with CPU (rel. diff < 1e-3): **{ok}**\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{args.name}.json", out)
    write_text(RESULTS / f"{args.name}.md", md)
    print(md)
    if not torch.cuda.is_available():
        print("CUDA is not available here: only the CPU reference ran.")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
