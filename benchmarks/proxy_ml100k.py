"""The summary as a model-selection proxy on ML-100k: the candidates of ``benchmarks/proxy_ml100k.yaml`` trained
once on a TD3 summary and once on the full data; rank correlations, top-k agreement and the time of both
searches.

Run (from the repository root, with the real data folder and a finished distillation, e.g. the one of
``benchmarks/distill_ml100k.py``):

    TD3REC_DATA_DIR=../shared/data python benchmarks/proxy_ml100k.py \
        --summary runs/ml100k-td3/summary_best.safetensors

Writes ``benchmarks/results/proxy_ml100k.json`` and ``.md`` after every candidate (``status: running``) and at
the end (``status: finished``); ``--resume`` takes the finished candidates of an earlier, interrupted run from
the JSON file instead of training them again. ``--full-from FILE`` (passed to ``td3rec proxy``'s
:class:`~td3rec.experiments.proxy.FullFrom`) takes the full-data side of every candidate from an earlier report
of the same settings, e.g. the committed one, so that a new summary costs only its summary search (about a
minute instead of 36); write the new report under another ``--name``:

    TD3REC_DATA_DIR=../shared/data python benchmarks/proxy_ml100k.py --summary NEW.safetensors \
        --full-from benchmarks/results/proxy_ml100k.json --name proxy_ml100k_new
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import platform
import sys
from pathlib import Path

import torch

from td3rec.data import load_dataset
from td3rec.data.loading import default_preprocess_config
from td3rec.errors import UserError
from td3rec.experiments.proxy import (
    FullFrom,
    format_report,
    full_from_note,
    load_proxy_config,
    metric_of,
    read_proxy_report,
    run_proxy,
    seconds,
)
from td3rec.training.checkpoint import load_checkpoint
from td3rec.utils.atomic import write_json, write_text

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", required=True, help="TD3 summary of the dataset (.safetensors)")
    parser.add_argument("--config", default=str(HERE / "proxy_ml100k.yaml"), help="the candidates and settings")
    parser.add_argument("--dataset", default="ml-100k", help="registered name or file (default ml-100k)")
    parser.add_argument("--k-core", type=int, help="k-core of --dataset (default: the dataset's)")
    parser.add_argument("--teacher", help="td3rec train run (only for candidates with init: reference)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config setting")
    parser.add_argument("--resume", action="store_true", help="reuse finished candidates of the results JSON")
    parser.add_argument("--full-from", metavar="FILE",
                        help="take every candidate's full-data results from this earlier report (same data and "
                             "settings; checked) and train only the summary side (as td3rec proxy --full-from)")
    parser.add_argument("--results", default=str(HERE / "results"), help="results folder")
    parser.add_argument("--name", default="proxy_ml100k", help="results file stem")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    config = load_proxy_config(args.config, [*args.set, f"device={args.device}"])
    json_path = Path(args.results) / f"{args.name}.json"
    md_path = json_path.with_suffix(".md")
    full_from = FullFrom.load(args.full_from, output=json_path) if args.full_from else None
    preprocess = default_preprocess_config(args.dataset)
    if args.k_core is not None:
        preprocess = dataclasses.replace(preprocess, k_core=args.k_core)
    dataset = load_dataset(args.dataset, preprocess)
    teacher = None
    if args.teacher:
        teacher, _ = load_checkpoint(Path(args.teacher) / "best.pt", args.device if args.device != "auto" else "cpu")
        teacher.eval()
    reuse = None
    if args.resume and json_path.is_file():
        reuse = {row["name"]: row for row in read_proxy_report(json_path, "--resume")["candidates"]}
    meta = {"command": " ".join(["python"] + sys.argv), "config_file": args.config, "torch": torch.__version__,
            "platform": platform.platform(), "threads": torch.get_num_threads()}

    def partial(rows: list[dict]) -> None:
        report = {"status": "running", "meta": meta, "dataset": dataset.name, "summary": args.summary,
                  "full_from": args.full_from, "metrics": list(config.metrics), "candidates": rows}
        write_json(json_path, report)
        write_text(md_path, markdown(report))

    result = run_proxy(dataset, args.summary, config, teacher=teacher, progress=False, reuse=reuse,
                       on_candidate=partial, full_from=full_from)
    report = {"status": "finished", "meta": meta, **result.to_dict()}
    write_json(json_path, report)
    write_text(md_path, markdown(report))
    print(format_report(report))
    print(f"results: {json_path}, {md_path}")


def markdown(report: dict) -> str:
    """The report as Markdown: the command, one row per candidate, the agreement and the times."""
    meta = report["meta"]
    rows = report["candidates"]
    settings = report.get("settings")
    lines = [f"# A TD3 summary as a model-selection proxy ({report['dataset']})", "",
             f"Command: `{meta['command']}` (candidates and settings: `{meta['config_file']}`)  ",
             f"Summary: `{report['summary']}`  ",
             f"torch {meta['torch']}, {meta['threads']} threads, {meta['platform']}.  ",
             f"Status: **{report['status']}** ({len(rows)} candidates done).", ""]
    note = full_from_note(report)
    if note:  # the full-data columns and time were not measured by this run
        lines += [f"**Reused:** the {note}.", ""]
    if settings is not None:
        s, f = settings["summary_training"], settings["full_training"]
        lines += [f"Every candidate is trained on the summary ({s['steps']} steps, {s['optimizer']} lr {s['lr']}, "
                  f"batches of {s['batch_size']}) and on the full data ({f['mode']} mode, lr {f['lr']}, early stopping "
                  f"on {f['valid_metric']} with patience {f['patience']}, at most {f['epochs']} epochs), "
                  f"{settings['seeds']} seed(s) per side; both are measured on the validation users. Initialisation "
                  f"of summary learners: `{settings['init']}`.", ""]
    metrics = list(report["agreement"]) if "agreement" in report else report["metrics"]
    head = (["candidate", "init"] + [f"summary {m}" for m in metrics] + [f"full data {m}" for m in metrics]
            + ["best epoch", "summary s", "full data s"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], r["init"]]
        cells += [_metric(r["summary"]["valid"], m) for m in metrics]
        cells += [_metric(r["full"]["valid"], m) for m in metrics]
        cells += [",".join(str(x["best_epoch"]) for x in r["full"]["runs"]), seconds(r["summary"]["seconds"]),
                  seconds(r["full"]["seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    if "agreement" in report:
        k = report["agreement"][metrics[0]]["k"]
        lines += ["", f"| metric | Spearman | Kendall tau-b | best full-data config | summary top-1 | in summary top-{k} "
                      f"| top-{k} overlap | summary picks | regret |", "|---|---|---|---|---|---|---|---|---|"]
        for key, a in report["agreement"].items():
            lines.append(f"| {key} | {_corr(a['spearman'])} | {_corr(a['kendall'])} | {', '.join(a['best_full'])} | "
                         f"{'yes' if a['top1'] else 'no'} | {'yes' if a['best_in_top_k'] else 'no'} | "
                         f"{a['top_k_overlap']}/{k} | {a['selected']} | {a['regret']:.4f} |")
        t = report["time"]
        speedup = "n/a" if t["speedup"] is None else f"{t['speedup']:.1f}x"
        measured = " (measured when the reused report was made)" if note else ""
        lines += ["", f"Search time: summary {seconds(t['summary_search_seconds'])} s, full data "
                      f"{seconds(t['full_search_seconds'])} s{measured}: **speed-up {speedup}** (wall time of "
                      "training and validating every candidate; the one-off teacher training and distillation are not "
                      "included).",
                  "", "Ties count against a candidate in the top-k columns; regret = best full-data value minus the "
                      "full-data value of the summary's pick."]
    return "\n".join(lines) + "\n"


def _metric(metrics: dict, key: str) -> str:
    return f"{metric_of(metrics, key):.4f}"


def _corr(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        raise SystemExit(f"proxy_ml100k: error: {err}") from None
