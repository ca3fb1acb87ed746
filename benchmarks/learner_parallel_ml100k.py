"""Learner parallelism on ML-100k: a multi-architecture distillation with 1 and 2 processes, side by side.

Both runs have the same settings and seed and train every architecture at every outer step
(``learners_per_step=0``); with 2 processes each process trains half of the learners (issue 14, item 4). They
end at the same summary (to float tolerance), so the time to reach a given validation score is the wall time to
reach the same outer step: the table gives, per run, the seconds to the first validation and to the end, the
validation score there, and the median seconds per outer step. The two runs alternate ``--rounds`` times
(medians reported; the machine is shared).

    OMP_NUM_THREADS=1 TD3REC_DATA_DIR=../shared/data python benchmarks/learner_parallel_ml100k.py \\
        --teacher RUNS/teachers/ml-100k-sasrec-... --teacher RUNS/teachers/ml-100k-gru4rec-... \\
        --teacher ... --teacher ... --steps 24 --rounds 1

Writes ``benchmarks/results/learner_parallel_ml100k.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from td3rec.utils.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"


def run(teachers: list[str], models: str, steps: int, nproc: int, out: Path, data_dir: str | None) -> dict:
    """One ``td3rec distill`` with ``nproc`` processes; its wall time, step times and validation."""
    args = [sys.executable, "-m", "td3rec", "-q", "distill", "--dataset", "ml-100k", "--model", models,
            *[a for t in teachers for a in ("--teacher", t)], "--max-steps", str(steps), "--out", str(out),
            "--no-progress", "--set", "learners_per_step=0", "--eval-init", "scratch",
            "--set", "select_metric=full:NDCG@10", "--nproc", str(nproc)]
    if data_dir:
        args += ["--data-dir", data_dir]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"td3rec distill --nproc {nproc} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
    history = metrics["history"]
    return {"processes": nproc, "wall_seconds": wall, "parallelism": metrics.get("parallelism"),
            "median_step_seconds": statistics.median(r["seconds"] for r in rows),
            "outer_steps": metrics["outer_steps"], "distill_seconds": metrics["seconds"],
            "valid": history[-1]["valid"]["full"]["NDCG@10"],
            "valid_by_model": {m: v["full"]["NDCG@10"] for m, v in history[-1].get("valid_by_model", {}).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="append", required=True, help="one td3rec train run per architecture")
    parser.add_argument("--models", default="sasrec,gru4rec,narm,bert4rec")
    parser.add_argument("--steps", type=int, default=24, help="outer steps per run (24 = one epoch on ML-100k)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("TD3REC_DATA_DIR"))
    parser.add_argument("--name", default="learner_parallel_ml100k")
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for nproc in (1, 2):
                result = run(args.teacher, args.models, args.steps, nproc, Path(tmp) / f"r{r}-p{nproc}", args.data_dir)
                runs[nproc].append(result)
                print(f"round {r + 1}, {nproc} process(es): {result['wall_seconds']:.1f} s, median "
                      f"{result['median_step_seconds']:.2f} s/step, valid full:NDCG@10 {result['valid']:.4f}",
                      flush=True)
    summary = {n: {"median_wall_seconds": statistics.median(r["wall_seconds"] for r in rs),
                   "median_distill_seconds": statistics.median(r["distill_seconds"] for r in rs),
                   "median_step_seconds": statistics.median(r["median_step_seconds"] for r in rs),
                   "valid": rs[0]["valid"]} for n, rs in runs.items()}
    speedup = summary[1]["median_step_seconds"] / summary[2]["median_step_seconds"]
    command = "python benchmarks/learner_parallel_ml100k.py " + " ".join(
        f"--teacher {Path(t).name}" for t in args.teacher) + f" --models {args.models} --steps {args.steps} --rounds {args.rounds}"
    env = f"torch {torch.__version__}, {platform.platform()}, one thread per process"
    write_json(RESULTS / f"{args.name}.json", {"command": command, "environment": env, "runs": runs,
                                                "summary": summary, "step_speedup": speedup})
    lines = [f"# Learner parallelism on ML-100k: {args.models}, every learner every step, 1 vs 2 processes", "",
             f"Command: `{command}` ({env}; {args.rounds} round(s), runs alternating).", "",
             "| processes | parallelism | median s / outer step | distillation s (outer loop) | wall s (command) "
             f"| valid full:NDCG@10 after {args.steps} steps |", "|---|---|---|---|---|---|"]
    for n, rs in runs.items():
        lines.append(f"| {n} | {rs[0]['parallelism']} | {summary[n]['median_step_seconds']:.2f} | "
                     f"{summary[n]['median_distill_seconds']:.0f} | {summary[n]['median_wall_seconds']:.0f} | "
                     f"{summary[n]['valid']:.4f} |")
    lines += ["", f"Outer step speed-up with 2 processes: **{speedup:.2f}×**. The two runs reach the same summary "
              "(to float tolerance, tested in tests/test_distributed.py), so the time to reach a validation score "
              "scales with the step time; the distillation seconds include the validations (each process "
              "validates its own architectures)."]
    write_text(RESULTS / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
