"""``td3rec proxy``: a summary as a cheap proxy for model selection.

Trains every learner configuration declared in CONFIG.yaml once on the summary and once on the full data and
reports how well the two rankings agree, and what each search cost. ``--full-from`` takes the full-data side
(which does not depend on the summary) from an earlier report, so that a new summary costs only its own search.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from td3rec.commands._dataset_args import add_dataset_arguments, dataset_from_args
from td3rec.commands._outputs import guard_output
from td3rec.errors import ConfigError
from td3rec.experiments.proxy import FullFrom, format_report, load_proxy_config, read_proxy_report, run_proxy
from td3rec.training.checkpoint import load_checkpoint
from td3rec.utils.atomic import write_json
from td3rec.utils.device import resolve_device

NAME = "proxy"
HELP = ("rank learner configurations by training them on a summary and on the full data: rank correlations, "
        "top-k agreement and the time of both searches")

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml",
                        help="the candidates (model, model_options, ...) and settings (see README)")
    add_dataset_arguments(parser, positional=False)
    parser.add_argument("--summary", required=True, metavar="FILE",
                        help="the summary (.safetensors) distilled from --dataset")
    parser.add_argument("--teacher", metavar="RUN_DIR",
                        help="a `td3rec train` run; needed only by candidates with init: reference")
    parser.add_argument("--json", metavar="FILE",
                        help="write the report as JSON (also after every candidate, with status running)")
    parser.add_argument("--resume", action="store_true",
                        help="take the candidates already in --json FILE whose settings are unchanged instead of "
                             "training them again (with --full-from: those are taken as they are, the others train "
                             "only on the summary)")
    parser.add_argument("--full-from", metavar="FILE",
                        help="an earlier report (--json) on the same data, split, max_len, seeds, full_training and "
                             "eval settings, holding every candidate with the same model, options and full_training "
                             "overrides: take their full-data results (metrics, best epochs, seconds) from it and "
                             "train only the summary side; anything else is refused")
    parser.add_argument("--device", help="auto, cpu or cuda (default: the config's device, auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of CONFIG.yaml, e.g. --set summary_training.steps=100 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="hide the full-data training progress bars")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f"device={args.device}")
    config = load_proxy_config(args.config, overrides)
    if not Path(args.summary).is_file():
        raise ConfigError(f"summary {args.summary} does not exist")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:  # not an input (--full-from ...), not td3rec's own file, only ever its own report
        guard_output(args, "json", own_file=is_proxy_report)
    if args.resume and json_path is None:
        raise ConfigError("--resume takes the finished candidates from --json FILE; give --json")
    reuse = _previous_candidates(json_path) if args.resume else None
    full_from = FullFrom.load(args.full_from, output=json_path) if args.full_from else None
    device = resolve_device(config.device)
    dataset = dataset_from_args(args)
    teacher = None
    if args.teacher:
        teacher, meta = load_checkpoint(Path(args.teacher) / "best.pt", device)
        if meta.get("fingerprint") != dataset.fingerprint():
            raise ConfigError(f"teacher {args.teacher} was trained on different data than {dataset.name!r}")
        teacher.eval()

    def save_partial(rows: list[dict]) -> None:
        if json_path is not None:
            write_json(json_path, {"status": "running", "dataset": dataset.name, "summary": args.summary,
                                   "full_from": args.full_from, "candidates": rows})

    result = run_proxy(dataset, args.summary, config, teacher=teacher, progress=not args.no_progress,
                       reuse=reuse, on_candidate=save_partial, full_from=full_from)
    report = result.to_dict()
    print(format_report(report))
    if json_path is not None:
        write_json(json_path, {"status": "finished", **report})
        print(f"results: {json_path}")
    return 0


def is_proxy_report(path: Path) -> bool:
    """Whether ``path`` holds an earlier ``td3rec proxy --json`` report (which ``--json`` may replace)."""
    try:
        read_proxy_report(path, "--json")
    except ConfigError:
        return False
    return True


def _previous_candidates(path: Path) -> dict[str, dict]:
    """Candidate results of an earlier report at ``path`` by name (none when the file does not exist)."""
    if not path.is_file():
        log.info("%s does not exist yet: every candidate is trained", path)
        return {}
    return {row["name"]: row for row in read_proxy_report(path, "--resume")["candidates"]}
