"""``td3rec evaluate``: train learners on a summary, a real subset or the full data and test them."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from td3rec.commands._outputs import guard_output
from td3rec.commands._dataset_args import add_dataset_arguments, dataset_from_args
from td3rec.config import load_config
from td3rec.errors import ConfigError
from td3rec.evaluation.initialisation import PROTOCOLS
from td3rec.evaluation.subset_size import DEFAULT_SUBSET_USERS, size_text, subset_sizes, summary_size
from td3rec.evaluation.suite import DataSpec, SuiteConfig, check_suite_inputs, data_labels, run_suite
from td3rec.models.registry import MODEL_NAMES
from td3rec.summary.real_subset import FEATURE_METHODS, SUBSET_METHODS
from td3rec.training.checkpoint import load_checkpoint
from td3rec.utils.atomic import write_json
from td3rec.utils.device import resolve_device

NAME = "evaluate"
HELP = "train learners on a summary / real subset / full data for a fixed schedule and test them"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser, positional=False)
    parser.add_argument("--summary", action="append", default=[], metavar="FILE",
                        help="a summary file (.safetensors) to evaluate (repeatable)")
    parser.add_argument("--sequences", action="append", default=[], metavar="FILE",
                        help="a file of hard synthetic sequences to evaluate, e.g. written by `td3rec export` "
                             "(repeatable); raw item ids must be items of --dataset")
    parser.add_argument("--sequences-format", metavar="FORMAT",
                        help="format of the --sequences files (default: detected from the name and content)")
    parser.add_argument("--subset", action="append", default=[], choices=list(SUBSET_METHODS),
                        help="also evaluate a real-subset baseline as large as each summary (repeatable); herding "
                             "and kcenter select on teacher features and need --teacher")
    parser.add_argument("--n", type=int, metavar="N",
                        help="users in each real subset (default: the summary's n synthetic sequences, one subset "
                             f"per distinct size when several summaries differ; {DEFAULT_SUBSET_USERS} without a "
                             "summary)")
    parser.add_argument("--seq-len", type=int, metavar="L",
                        help="items per real-subset user, their last L training items (default: the summary's L "
                             "positions; max_len without a summary)")
    parser.add_argument("--whole", action="store_true", help="also train on the full data (early stopping)")
    parser.add_argument("--arch", default="sasrec",
                        help=f"comma-separated learner architectures: {','.join(MODEL_NAMES)} (default sasrec)")
    parser.add_argument("--init",
                        help="comma-separated initialisation protocols (default all three; reference only for the "
                             "architectures with a --teacher); reference given here needs a teacher of every --arch")
    parser.add_argument("--teacher", action="append", default=[], metavar="RUN_DIR",
                        help="a `td3rec train` run of some architecture (needed by --init reference; repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="learners per cell (default 3)")
    parser.add_argument("--steps", type=int, help="training steps per learner (default 200)")
    parser.add_argument("--split", choices=["test", "valid"], default="test", help="users to measure (default test)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--config", metavar="FILE", help="YAML with SuiteConfig settings")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a SuiteConfig setting, e.g. training.lr=0.001")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


#: the protocols evaluated when --init is not given (reference only where a teacher of the architecture is)
DEFAULT_INITS = "reference,shared-item-factor,scratch"


def _csv(text: str, allowed: tuple[str, ...], what: str, option: str) -> tuple[str, ...]:
    """A comma-separated list of known, distinct names (a name twice would train the same cell twice)."""
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise ConfigError(f"unknown {what} {bad[0] if bad else text!r}; choose from {', '.join(allowed)}")
    twice = next((x for i, x in enumerate(items) if x in items[:i]), None)
    if twice is not None:
        raise ConfigError(f"{option} names {twice} twice ({text}); give each {what} once")
    return items


def _check_cells(specs: list[DataSpec], config: SuiteConfig, teachers: dict, explicit_inits: bool) -> None:
    """Before any training: an explicit ``--init reference`` has a teacher for every architecture, and at least one
    (data, architecture, protocol) cell can be trained (the others are skipped with a warning)."""
    if explicit_inits and "reference" in config.inits:
        missing = [arch for arch in config.archs if arch not in teachers]
        if missing:
            given = ", ".join(sorted(teachers)) or "none"
            raise ConfigError(f"--init reference starts every learner from its architecture's teacher: no "
                              f"{', '.join(missing)} teacher among --teacher (given: {given}); give one or drop "
                              "reference from --init")
    has_summary = any(spec.kind == "summary" for spec in specs)
    cells = sum(len(config.archs) if spec.kind == "whole" else sum(
        1 for arch in config.archs for init in config.inits
        if not (init == "reference" and arch not in teachers)
        and not (init == "shared-item-factor" and not has_summary and arch not in teachers))
        for spec in specs)
    if cells == 0:
        raise ConfigError(f"nothing would be evaluated: --init {','.join(config.inits)} needs a teacher of "
                          f"{','.join(config.archs)} (reference) or an item factor from a --summary or a --teacher "
                          "(shared-item-factor); give one, or add scratch to --init")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"training.steps={args.steps}")
    config = load_config(SuiteConfig, args.config, overrides)
    config.archs = _csv(args.arch, MODEL_NAMES, "architecture", "--arch")
    config.inits = _csv(args.init or DEFAULT_INITS, PROTOCOLS, "initialisation protocol", "--init")
    if args.init is not None and "reference" in config.inits and not args.teacher:
        raise ConfigError("--init reference starts every learner from its architecture's teacher: give --teacher "
                          "RUN_DIR (one per --arch) or drop reference from --init")
    config.seeds = args.seeds
    config.split = args.split
    if config.seeds <= 0 or config.training.steps <= 0:
        raise ConfigError("--seeds and --steps must be positive")
    if args.n is not None and args.n <= 0:
        raise ConfigError(f"--n must be positive, got {args.n}")
    if args.seq_len is not None and args.seq_len < 2:
        raise ConfigError(f"--seq-len must be at least 2 (an input and a target), got {args.seq_len}")
    config.validate()
    if not (args.summary or args.sequences or args.subset or args.whole):
        raise ConfigError(f"nothing to evaluate: give --summary FILE, --sequences FILE, --subset {'|'.join(SUBSET_METHODS)} or --whole")
    if any(kind in FEATURE_METHODS for kind in args.subset) and not args.teacher:
        raise ConfigError("--subset herding/kcenter select on teacher features: give --teacher RUN_DIR")
    for what, paths in (("summary", args.summary), ("sequences file", args.sequences)):
        for p in paths:
            if not Path(p).is_file():
                raise ConfigError(f"{what} {p} does not exist")
    sizes = subset_sizes([summary_size(p) for p in args.summary] if args.subset else [], args.n, args.seq_len)
    specs = ([DataSpec("summary", path=p) for p in args.summary]
             + [DataSpec("sequences", path=p, fmt=args.sequences_format) for p in args.sequences]
             + [DataSpec(k, n=n, seq_len=length) for k in args.subset for n, length in sizes])
    if args.whole:
        specs.append(DataSpec("whole"))
    if args.json:  # not an input, not a name td3rec writes in its folders, and only ever its own earlier report
        guard_output(args, "json", own_file=is_evaluate_report)
    data_labels(specs)  # the same file or subset given twice: refused before any work
    device = resolve_device(args.device)
    dataset = dataset_from_args(args)
    teachers = {}
    for run_dir in args.teacher:
        model, meta = load_checkpoint(Path(run_dir) / "best.pt", device)
        if meta.get("fingerprint") != dataset.fingerprint():
            raise ConfigError(f"teacher {run_dir} was trained on different data than {dataset.name!r}")
        if meta["model"] in teachers:
            raise ConfigError(f"--teacher {run_dir} is a second {meta['model']} teacher; give one per architecture")
        teachers[meta["model"]] = model.eval()
        config.max_len = model.max_len
    _check_cells(specs, config, teachers, explicit_inits=args.init is not None)
    check_suite_inputs(dataset, specs, config, teachers)
    rows = run_suite(dataset, specs, config, device, teachers)
    print(format_rows(rows, config.eval.protocols))
    if args.json:
        guard_output(args, "json", own_file=is_evaluate_report)  # (again: the file may have appeared meanwhile)
        write_json(args.json, {"dataset": dataset.name, "fingerprint": dataset.fingerprint(), "split": config.split,
                               "steps": config.training.steps, "seeds": config.seeds, "rows": rows})
        print(f"results: {args.json}")
    return 0


def is_evaluate_report(path: Path) -> bool:
    """Whether ``path`` holds an earlier ``td3rec evaluate --json`` report (which ``--json`` may replace)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(report, dict) and isinstance(report.get("rows"), list) and "fingerprint" in report


def format_rows(rows: list[dict], protocols: tuple[str, ...], metrics: tuple[str, ...] = ("HR@10", "NDCG@10")) -> str:
    """A text table: one line per (data, arch, init) with the data's size (``n×L``: sequences × the longest
    one's positions, so a summary and its subsets are seen to be alike), mean ± std of each protocol's metrics
    over the seeds (the mean alone for a single seed); the data column is as wide as its longest label (labels
    are never cut)."""
    cols = [f"{p}:{m}" for p in protocols for m in metrics]
    width = max([len("data")] + [len(r["data"]) for r in rows])
    sizes = [size_text(r) for r in rows]
    size_width = max([len("n×L")] + [len(s) for s in sizes])
    head = f"{'data':<{width}} {'n×L':>{size_width}} {'arch':<9} {'init':<29} " + " ".join(f"{c:>17}" for c in cols)
    lines = [head, "-" * len(head)]
    for r, size in zip(rows, sizes):
        cells = []
        for p in protocols:
            for m in metrics:
                text = f"{r['mean'][p][m]:.4f}"
                if len(r.get("runs", ())) != 1:
                    text += f" ± {r['std'][p][m]:.4f}"
                cells.append(text.rjust(17))
        init = r["init"].split(" ")[0]
        if "learner_width" in r:  # built as wide as the summary's V, not the architecture's own width
            init += f" ({r['learner_width']} wide)"
        lines.append(f"{r['data']:<{width}} {size:>{size_width}} {r['arch']:<9} {init:<29} " + " ".join(cells))
    return "\n".join(lines)
