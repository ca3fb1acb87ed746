"""A Markdown report with tables and figures from the results of ``td3rec benchmark`` (``td3rec report``).

Per dataset:

- **quality** tables, one per budget ``(n, L)`` and initialisation protocol: one row per method, one column
  per architecture × metric, each cell the mean ± population standard deviation over seeds; the best mean of
  each column among the budgeted methods is **bold** (the ``whole`` row, the full data, is a reference and never bold);
- **size**: summary parameters (without and with the item factor V) and the training data's interactions
  as a fraction of the real data's;
- **TD3 against the baselines**: per budget and metric, whether TD3 beats Farzi and every real subset, and if
  not, which methods reach or beat it;
- **cost**: per method and budget, the wall time to produce the data (distillation, or subset selection),
  to train one learner on it and on the full data (early stopping), the speed-up and the quality reached
  (absolute and as a share of the full data's);
- **figures** (PNG, Agg backend): quality against budget per method, per-architecture bars, quality against
  learner training time, quality against data size.

The report folder (``report.md`` and ``figures/``) is written into a temporary folder and renamed into
place when complete, so a report folder is never half-written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from td3rec.errors import ConfigError, DataError
from td3rec.utils.atomic import output_error
from td3rec.utils.output_guard import MARKER, REPORT_FOLDER, check_output

REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
#: preferred first choices of the architecture and protocol the figures show
PREFERRED_ARCH = "sasrec"
PREFERRED_INITS = ("shared-item-factor", "scratch", "reference")
GroupKey = tuple  # (dataset, method, n, seq_len, arch, init)


# -- loading and aggregation ------------------------------------------------------------------------------
def load_results(path: str | Path) -> dict:
    """``results.json`` of a ``td3rec benchmark`` run: the folder or the file itself."""
    p = Path(path)
    file = p / "results.json" if p.is_dir() else p
    if not file.is_file():
        raise DataError(f"{path}: no benchmark results (expected a results folder with results.json, or the file)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{file} cannot be read as JSON ({type(err).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise DataError(f"{file} is not a td3rec benchmark results file (no rows)")
    return data


@dataclass
class Group:
    """The seeds of one (dataset, method, budget, architecture, protocol)."""

    dataset: str
    method: str
    n: int | None
    seq_len: int | None
    arch: str
    init: str
    rows: list[dict] = field(default_factory=list)

    def stat(self, column: str) -> tuple[float, float]:
        """Mean and population standard deviation of ``column`` over the seeds (``nan`` when absent)."""
        values = [r.get(column) for r in self.rows]
        values = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(float(v))]
        if not values:
            return float("nan"), float("nan")
        mean = sum(values) / len(values)
        return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))

    def count(self, column: str) -> int:
        """How many seeds have a value of ``column``."""
        return sum(isinstance(v, (int, float)) and not math.isnan(float(v)) for v in (r.get(column) for r in self.rows))

    def first(self, column: str):
        for r in self.rows:
            if r.get(column) is not None:
                return r[column]
        return None


def group_rows(rows: list[dict]) -> dict[GroupKey, Group]:
    """Finished (``done``) rows grouped over seeds."""
    groups: dict[GroupKey, Group] = {}
    for r in rows:
        if r.get("status") != "done":
            continue
        key = (r["dataset"], r["method"], r.get("n"), r.get("seq_len"), r["arch"], r["init"])
        groups.setdefault(key, Group(*key)).rows.append(r)
    return groups


def _ordered(values, preferred=()) -> list:
    """The distinct ``values``: the ``preferred`` ones first (in that order), then the others in their order of
    first appearance. ``values`` must be ordered (a list, a dict), never a set: a set of strings is ordered by
    hashes that change from one process to the next, and so would the report's figures."""
    present = set(values)
    seen = []
    for v in list(preferred) + list(values):
        if v in present and v not in seen:
            seen.append(v)
    return seen


@dataclass
class ReportView:
    """What the report shows: the metrics and the architecture / protocol / budget of the figures."""

    metrics: list[str]
    arch: str
    init: str
    budget: int | None


def default_view(data: dict, metrics: list[str] | None = None, arch: str | None = None, init: str | None = None,
                 budget: int | None = None) -> ReportView:
    """Fill in unset choices: NDCG@10 under every protocol; SASRec; shared-item-factor; the largest budget."""
    rows = [r for r in data["rows"] if r.get("status") == "done"]
    if not rows:
        raise DataError("the results hold no finished cell yet; run td3rec benchmark first")
    available = [k for k in data.get("metrics") or [] if any(r.get(k) is not None for r in rows)]
    if metrics is None:
        protocols = _ordered([k.split(":")[0] for k in available])
        metrics = [f"{p}:NDCG@10" for p in protocols if f"{p}:NDCG@10" in available] or available[:2]
    for key in metrics:
        if key not in available:
            raise ConfigError(f"metric {key!r} is not in the results; available: {', '.join(available)}")
    archs = _ordered([r["arch"] for r in rows], [PREFERRED_ARCH])
    inits = _ordered([r["init"] for r in rows if r.get("family") != "whole"], PREFERRED_INITS)
    budgets = sorted({r["n"] for r in rows if r.get("n") is not None})
    if arch is not None and arch not in archs:
        raise ConfigError(f"architecture {arch!r} is not in the results ({', '.join(archs)})")
    if init is not None and init not in inits:
        raise ConfigError(f"protocol {init!r} is not in the results ({', '.join(inits) or 'none'})")
    if budget is not None and budget not in budgets:
        raise ConfigError(f"budget {budget} is not in the results ({', '.join(map(str, budgets)) or 'none'})")
    return ReportView(metrics, arch or archs[0], init or (inits[0] if inits else "scratch"),
                      budget if budget is not None else (budgets[-1] if budgets else None))


# -- Markdown ---------------------------------------------------------------------------------------------
def seeds_note(count: int, seeds: int | None) -> str:
    """`` (k of n seeds)`` when a cell has fewer finished seeds than the grid declares, else nothing."""
    return f" ({count} of {seeds} seeds)" if seeds is not None and 0 < count < seeds else ""


def fmt(mean: float, std: float, digits: int = 4, count: int | None = None) -> str:
    """``mean ± std``; the mean alone when ``count`` (values behind it) is 1; ``–`` for no value."""
    if math.isnan(mean):
        return "–"
    if count == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def counted(value, noun: str) -> str:
    """``1 seed``, ``3 seeds``; an unknown ``value`` (``?``, ``None``) takes the plural."""
    return f"{value} {noun}" if value == 1 else f"{value} {noun}s"


def _seconds(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def quality_table(groups: dict[GroupKey, Group], dataset: str, methods: list[str], whole: list[str],
                  n: int | None, seq_len: int | None, init: str | None, archs: list[str], metrics: list[str],
                  seeds: int | None = None, whole_alone: bool = False) -> str | None:
    """Rows = methods (the whole data first), columns = architecture × metric; best non-whole mean in bold; a
    cell with fewer than ``seeds`` finished seeds says how many it has. ``None`` when no budgeted method has a
    result, unless ``whole_alone`` (then the full-data rows alone)."""
    columns = [(a, m) for a in archs for m in metrics]
    body: list[tuple[str, bool, list[tuple[float, float]]]] = []
    counts: dict[tuple[str, int], int] = {}

    def stats_of(label: str, key_of) -> list[tuple[float, float]]:
        out = []
        for j, (a, m) in enumerate(columns):
            group = groups.get(key_of(a))
            out.append(group.stat(m) if group is not None else (float("nan"),) * 2)
            counts[label, j] = group.count(m) if group is not None else 0
        return out

    for method in whole:
        label = f"{method} (full data)"
        body.append((label, True, stats_of(label, lambda a: (dataset, method, None, None, a, "full-data"))))
    for method in methods:
        stats = stats_of(method, lambda a: (dataset, method, n, seq_len, a, init))
        if any(not math.isnan(s[0]) for s in stats):
            body.append((method, False, stats))
    if not whole_alone and not any(not is_whole for _, is_whole, _ in body):
        return None
    best = []
    for j in range(len(columns)):
        values = [round(stats[j][0], 4) for _, is_whole, stats in body if not is_whole and not math.isnan(stats[j][0])]
        best.append(max(values) if values else None)
    rows = []
    for name, is_whole, stats in body:
        cells = []
        for j, (mean, std) in enumerate(stats):
            text = fmt(mean, std, count=counts[name, j])
            if not is_whole and best[j] is not None and not math.isnan(mean) and round(mean, 4) == best[j]:
                text = f"**{text}**"
            text += seeds_note(counts[name, j], seeds)
            cells.append(text)
        rows.append([name] + cells)
    header = ["method"] + [f"{a} {m}" for a, m in columns]
    return markdown_table(header, rows)


def _methods(data: dict, rows: list[dict]) -> tuple[list[str], list[str]]:
    """(budgeted methods, whole methods) in the config's order."""
    declared = [m["name"] if isinstance(m, dict) else m for m in (data.get("config") or {}).get("methods", [])]
    present = {r["method"]: r.get("family") for r in rows}
    order = _ordered(present, declared)
    return [m for m in order if present[m] != "whole"], [m for m in order if present[m] == "whole"]


def build_markdown(data: dict, view: ReportView, figures: dict[str, dict[str, str]], source: str) -> str:
    rows = data["rows"]
    groups = group_rows(rows)
    methods, whole = _methods(data, rows)
    config = data.get("config") or {}
    lines = ["# td3rec benchmark report", ""]
    finished = sum(r.get("status") in ("done", "skipped", "failed") for r in rows)
    lines.append(f"Results: `{source}` — {finished} of {data.get('cells_total', finished)} cells finished "
                 f"(status: {data.get('status', '?')}). Test users; mean ± population standard deviation over "
                 f"{counted(config.get('seeds', '?'), 'seed')}. In the quality tables the best mean of each column "
                 "among the budgeted methods is **bold**; the full-data row is the reference and is never marked.")
    training = config.get("training") or {}
    if training:
        whole_config = config.get("whole") or {}
        lines.append(f"Learners on summaries and subsets: {counted(training.get('steps'), 'step')}, "
                     f"{training.get('optimizer')} lr {training.get('lr')}, batches of {training.get('batch_size')} "
                     f"(capped at n). Full data: early stopping ({whole_config.get('mode', '?')} examples, at most "
                     f"{counted(whole_config.get('epochs', '?'), 'epoch')}).")
    distill = config.get("distill") or {}
    if distill:
        budget = distill.get("time_budget") or 0
        length = (f"a {budget:g} s wall-clock budget each (outer steps planned to fit)" if budget
                  else counted(distill.get("epochs"), "outer epoch"))
        sparse = (f", top-{distill['support_size']} supports, sampled normalisers (inner "
                  f"{(distill.get('inner') or {}).get('negatives', 0)}, real batch {distill.get('outer_negatives', 0)} "
                  f"negatives)" if distill.get("support_size") else "")
        lines.append(f"Distillation: {length}{sparse}, "
                     f"inner_steps {distill.get('inner_steps')}, window {distill.get('window')}, "
                     f"real batch {distill.get('real_batch_size')}, outer lr {distill.get('outer_lr')}, "
                     f"validation `{distill.get('select_metric')}` ({distill.get('eval_init')} learners).")
        for ds in config.get("datasets") or []:
            if ds.get("distill"):
                changes = ", ".join(f"{k} {v}" for k, v in sorted(ds["distill"].items()))
                lines.append(f"On {ds.get('name')} the distillations differ: {changes}.")
    skipped = [r for r in rows if r.get("status") in ("skipped", "failed")]
    if skipped:
        reasons: dict[str, int] = defaultdict(int)
        for r in skipped:
            reasons[f"{r['status']}: {r.get('reason')}"] += 1
        lines += ["", "Cells not run: " + "; ".join(f"{n} × {why}" for why, n in reasons.items()) + "."]
    for dataset in _ordered([r["dataset"] for r in rows], [d["name"] for d in config.get("datasets", [])]):
        ds_rows = [r for r in rows if r["dataset"] == dataset and r.get("status") == "done"]
        if not ds_rows:
            continue
        real = next((r.get("real_interactions") for r in ds_rows if r.get("real_interactions")), None)
        lines += ["", f"## {dataset}", ""]
        if real:
            lines.append(f"Real data: {real:,} interactions.")
        teachers = [t for t in (data.get("teachers") or {}).values() if t.get("dataset") == dataset]
        for t in teachers:
            lines.append(f"Teacher ({t['arch']}, one-off, shared by every distillation and feature-based subset): "
                         f"{_seconds(t.get('train_seconds'))} s of training.")
        archs = _ordered([r["arch"] for r in ds_rows], [PREFERRED_ARCH] + list(config.get("archs", [])))
        inits = _ordered([r["init"] for r in ds_rows if r.get("family") != "whole"], PREFERRED_INITS)
        budgets = sorted({(r["n"], r["seq_len"]) for r in ds_rows if r.get("n") is not None})
        lines += ["", "### Quality", ""]
        if not budgets:  # only full-data cells have finished: show them alone
            lines += ["Only full-data cells have finished for this dataset.", "",
                      quality_table(groups, dataset, [], whole, None, None, None, archs, view.metrics,
                                    config.get("seeds"), whole_alone=True), ""]
        for n, seq_len in budgets:
            for init in inits:
                table = quality_table(groups, dataset, methods, whole, n, seq_len, init, archs, view.metrics,
                                      config.get("seeds"))
                if table is not None:
                    lines += [f"**n = {n} sequences, L = {seq_len}; {init} initialisation**", "", table, ""]
        for n, seq_len in budgets:
            for init in inits:
                for metric in view.metrics:
                    table = transfer_table(groups, dataset, methods, whole, config, n, seq_len, init, metric)
                    if table is not None:
                        lines += [f"### Transfer: {metric} relative to each architecture's full data (n = {n}, "
                                  f"L = {seq_len}; {init} initialisation)", "", table, "",
                                  "Rows: summaries, by the architectures they were distilled through; columns: the "
                                  "architecture trained on them; min: the worst architecture.", ""]
        verdict = td3_verdict(groups, dataset, methods, budgets, view)
        if verdict is not None:
            lines += [f"### TD3 against Farzi and the real subsets ({view.arch}, {view.init} initialisation)", "",
                      verdict, ""]
        if budgets:
            lines += ["### Size", "", size_table(groups, dataset, methods, budgets, real), ""]
        lines += [f"### Cost ({view.arch}, {view.init} initialisation, {view.metrics[0]})", "",
                  cost_table(groups, dataset, methods, whole, budgets, view), ""]
        lines += ["Speed-up = full-data training time / training time on the data (one learner each); time to "
                  "produce the data = distillation (teacher excluded) or subset selection (teacher features "
                  "included).", ""]
        if dataset in figures:
            lines += ["### Figures", ""]
            for title, rel in figures[dataset].items():
                lines += [f"![{title}]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


def distilled_through(config: dict, method: str) -> str:
    """The architectures a benchmark method's summary was distilled through (its distill section's model, else
    the teacher's)."""
    for m in config.get("methods") or []:
        if isinstance(m, dict) and m.get("name") == method and (m.get("distill") or {}).get("model"):
            return str(m["distill"]["model"]).replace(" ", "")
    return str((config.get("teacher") or {}).get("model", "?"))


def transfer_table(groups: dict[GroupKey, Group], dataset: str, methods: list[str], whole: list[str], config: dict,
                   n: int, seq_len: int, init: str, metric: str) -> str | None:
    """Distilled-through × evaluated-on: each summary's mean ``metric`` per learner architecture as a percentage
    of that architecture's full-data mean; ``None`` unless some summary was judged by two or more architectures."""
    archs = _ordered([k[4] for k in groups if k[0] == dataset and k[2] == n and k[3] == seq_len and k[5] == init],
                     [PREFERRED_ARCH] + list(config.get("archs", [])))
    whole_of = {a: next((groups[k] for w in whole if (k := (dataset, w, None, None, a, "full-data")) in groups), None)
                for a in archs}
    rows = []
    for method in methods:
        cells = {a: groups.get((dataset, method, n, seq_len, a, init)) for a in archs}
        if not any(g is not None and g.first("family") == "distill" for g in cells.values()):
            continue
        ratios = {}
        for a, group in cells.items():
            if group is not None and whole_of[a] is not None:
                mean, base = group.stat(metric)[0], whole_of[a].stat(metric)[0]
                if not math.isnan(mean) and base > 0:
                    ratios[a] = mean / base
        if len(ratios) >= 2:
            row = [method, distilled_through(config, method)]
            row += [f"{100 * ratios[a]:.0f}%" if a in ratios else "–" for a in archs]
            rows.append(row + [f"{100 * min(ratios.values()):.0f}%"])
    if not rows:
        return None
    return markdown_table(["summary", "distilled through", *archs, "min"], rows)


def td3_verdict(groups: dict[GroupKey, Group], dataset: str, methods: list[str], budgets: list[tuple[int, int]],
                view: ReportView) -> str | None:
    """Per budget and metric: whether TD3's mean is above every other non-ablation method's (Farzi, the real
    subsets, declared variants), and if not, which ones reach or beat it."""
    if "td3" not in methods:
        return None
    rivals = [m for m in methods if m != "td3" and not m.startswith("td3-")]
    rows = []
    for n, seq_len in budgets:
        td3 = groups.get((dataset, "td3", n, seq_len, view.arch, view.init))
        if td3 is None:
            continue
        for metric in view.metrics:
            mine = td3.stat(metric)[0]
            others = [(m, groups[k].stat(metric)[0]) for m in rivals
                      if (k := (dataset, m, n, seq_len, view.arch, view.init)) in groups]
            better = sorted(((m, v) for m, v in others if v >= mine), key=lambda x: -x[1])
            verdict = ("no other method at this budget yet" if not others else "TD3 is best" if not better else
                       "**not best**: " + ", ".join(f"{m} {v:.4f}" for m, v in better) + " reach or beat it")
            rows.append([str(n), str(seq_len), metric, f"{mine:.4f}", str(len(others)), verdict])
    if not rows:
        return None
    return markdown_table(["n", "L", "metric", "TD3", "compared with", "verdict"], rows)


def size_table(groups: dict[GroupKey, Group], dataset: str, methods: list[str], budgets: list[tuple[int, int]],
               real: int | None) -> str:
    rows = []
    for method in methods:
        for n, seq_len in budgets:
            group = next((g for k, g in groups.items() if k[:4] == (dataset, method, n, seq_len)), None)
            if group is None:
                continue
            params = group.first("summary_parameters")
            with_v = group.first("summary_parameters_with_item_factor")
            inter = group.first("data_interactions")
            fraction = group.first("size_fraction")
            rows.append([method, str(n), str(seq_len), "–" if params is None else f"{params:,}",
                         "–" if with_v is None else f"{with_v:,}", "–" if inter is None else f"{inter:,}",
                         "–" if fraction is None else f"{100 * fraction:.2f} %"])
    header = ["method", "n", "L", "parameters", "parameters with V", "interactions / positions",
              "size / real interactions"]
    return markdown_table(header, rows)


def cost_table(groups: dict[GroupKey, Group], dataset: str, methods: list[str], whole: list[str],
               budgets: list[tuple[int, int]], view: ReportView) -> str:
    metric = view.metrics[0]
    whole_group = next((groups[k] for w in whole if (k := (dataset, w, None, None, view.arch, "full-data")) in groups),
                       None)
    whole_time = whole_group.stat("train_seconds")[0] if whole_group else float("nan")
    whole_quality = whole_group.stat(metric)[0] if whole_group else float("nan")
    rows = []
    if whole_group is not None:
        rows.append([f"{whole_group.method} (full data)", "–", "–", "0", _seconds(whole_time), _seconds(whole_time),
                     "1.0", fmt(*whole_group.stat(metric), count=whole_group.count(metric)), "100 %"])
    for method in methods:
        for n, seq_len in budgets:
            group = groups.get((dataset, method, n, seq_len, view.arch, view.init))
            if group is None:
                continue
            learner = group.stat("train_seconds")[0]
            quality = group.stat(metric)
            speedup = whole_time / learner if learner and not math.isnan(whole_time) else float("nan")
            share = quality[0] / whole_quality if whole_quality and not math.isnan(whole_quality) else float("nan")
            rows.append([method, str(n), str(seq_len), _seconds(group.stat("data_seconds")[0]), _seconds(learner),
                         _seconds(whole_time), "–" if math.isnan(speedup) else f"{speedup:.1f}",
                         fmt(*quality, count=group.count(metric)),
                         "–" if math.isnan(share) else f"{100 * share:.0f} %"])
    header = ["method", "n", "L", "time to produce the data (s)", "learner training (s)",
              "full-data training (s)", "speed-up", metric, "share of full data"]
    return markdown_table(header, rows)


# -- figures ----------------------------------------------------------------------------------------------
def _figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _method_styles(methods: list[str]) -> dict[str, dict]:
    """One colour (tab20: 20 distinct ones) and marker per method, the same in every figure."""
    palette = colormaps["tab20"].colors
    markers = "osD^v<>pPXh"
    return {m: {"color": palette[(2 * i) % 20 + (2 * i) // 20 % 2], "marker": markers[i % len(markers)]}
            for i, m in enumerate(methods)}


def budget_figure(groups, dataset: str, methods: list[str], whole: list[str], view: ReportView) -> Figure | None:
    """Quality against the number of sequences n, one line per method (error bars: std over seeds)."""
    keys = [k for k in groups if k[0] == dataset and k[4] == view.arch and k[5] == view.init and k[2] is not None]
    if not keys:
        return None
    seq_len = sorted({k[3] for k in keys})[0]
    fig = _figure(5.5 * len(view.metrics), 4.5)
    styles = _method_styles(methods)
    for index, metric in enumerate(view.metrics):
        ax = fig.add_subplot(1, len(view.metrics), index + 1)
        for method in methods:
            points = sorted((k[2], groups[k].stat(metric)) for k in keys if k[1] == method and k[3] == seq_len)
            if not points:
                continue
            ax.errorbar([p[0] for p in points], [p[1][0] for p in points], yerr=[p[1][1] for p in points],
                        label=method, capsize=3, **styles[method])
        for w in whole:
            group = groups.get((dataset, w, None, None, view.arch, "full-data"))
            if group is not None:
                mean, std = group.stat(metric)
                ax.axhline(mean, color="black", linestyle="--", label=f"{w} (full data)")
                ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15)
        ax.set_xlabel("budget n (sequences)")
        ax.set_ylabel(metric)
        ax.set_title(f"{dataset}: {metric} vs budget (L = {seq_len})", fontsize="medium")
        ax.grid(alpha=0.3)
    fig.axes[-1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"{view.arch}, {view.init} initialisation", fontsize="small")
    fig.tight_layout()
    return fig


def arch_figure(groups, dataset: str, methods: list[str], whole: list[str], view: ReportView) -> Figure | None:
    """Grouped bars: one group per architecture, one bar per method (and the full data), at one budget."""
    metric = view.metrics[0]
    archs = _ordered([k[4] for k in groups if k[0] == dataset], [PREFERRED_ARCH])
    seq_lens = sorted({k[3] for k in groups if k[0] == dataset and k[2] == view.budget})
    if not archs or not seq_lens:
        return None
    seq_len = seq_lens[0]
    series = [(f"{w} (full data)", lambda a, w=w: groups.get((dataset, w, None, None, a, "full-data"))) for w in whole]
    series += [(m, lambda a, m=m: groups.get((dataset, m, view.budget, seq_len, a, view.init))) for m in methods]
    series = [(name, get) for name, get in series if any(get(a) is not None for a in archs)]
    if not series:
        return None
    styles = _method_styles(methods)
    fig = _figure(min(16.0, max(7.0, 0.3 * len(archs) * len(series) + 2)), 4.8)
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    x = np.arange(len(archs))
    for i, (name, get) in enumerate(series):
        stats = [get(a).stat(metric) if get(a) is not None else (float("nan"), 0.0) for a in archs]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [s[0] for s in stats], width, yerr=[s[1] for s in stats],
               label=name, capsize=2, color=styles[name]["color"] if name in styles else "black")
    ax.set_xticks(x)
    ax.set_xticklabels(archs)
    ax.set_ylabel(metric)
    ax.set_title(f"{dataset}: {metric} per architecture (n = {view.budget}, L = {seq_len}, {view.init})",
                 fontsize="medium")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _scatter(groups, dataset: str, methods: list[str], whole: list[str], view: ReportView, x_column: str,
             x_label: str, title: str, whole_x: str | None) -> Figure | None:
    metric = view.metrics[0]
    keys = [k for k in groups if k[0] == dataset and k[4] == view.arch and k[5] == view.init and k[2] is not None]
    if not keys:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    styles = _method_styles(methods)
    for method in methods:
        pts = [(groups[k].stat(x_column)[0], groups[k].stat(metric)[0], k[2]) for k in keys if k[1] == method]
        pts = [p for p in pts if not math.isnan(p[0]) and p[0] > 0]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=method, **styles[method])
            for px, py, n in pts:
                ax.annotate(str(n), (px, py), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if whole_x is not None:
        for w in whole:
            group = groups.get((dataset, w, None, None, view.arch, "full-data"))
            if group is not None:
                ax.scatter([group.stat(whole_x)[0]], [group.stat(metric)[0]], marker="*", s=150, color="black",
                           label=f"{w} (full data)")
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(metric)
    ax.set_title(f"{dataset}: {title} ({view.arch}, {view.init}; labels = n)", fontsize="medium")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figures_for(groups, dataset: str, methods: list[str], whole: list[str],
                view: ReportView) -> list[tuple[str, str, Figure]]:
    """The figures of one dataset as ``(file stem, title, figure)`` (those without data are left out)."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    figs = [
        (f"quality_vs_budget_{slug}", "quality vs budget", budget_figure(groups, dataset, methods, whole, view)),
        (f"arch_bars_{slug}", "quality per architecture", arch_figure(groups, dataset, methods, whole, view)),
        (f"quality_vs_time_{slug}", "quality vs learner training time",
         _scatter(groups, dataset, methods, whole, view, "train_seconds", "learner training time (s, log)",
                  "quality vs training time", "train_seconds")),
        (f"quality_vs_size_{slug}", "quality vs data size",
         _scatter(groups, dataset, methods, whole, view, "size_fraction",
                  "training data size / real interactions (log)", "quality vs size", "size_fraction")),
    ]
    return [(stem, title, fig) for stem, title, fig in figs if fig is not None]


# -- writing ----------------------------------------------------------------------------------------------
def write_report(results: str | Path, out_dir: str | Path | None = None, overwrite: bool = False,
                 metrics: list[str] | None = None, arch: str | None = None, init: str | None = None,
                 budget: int | None = None) -> Path:
    """Write ``report.md`` and ``figures/*.png`` into ``out_dir`` (default ``RESULTS/report``), atomically as a
    folder; returns the folder."""
    res = Path(results)
    out = Path(out_dir) if out_dir is not None else (res if res.is_dir() else res.parent) / "report"
    # a report folder td3rec created, holding nothing else and none of the results it reads (the output guard)
    check_output(out, "--out", [("RESULTS", res / "results.json" if res.is_dir() else res)], kind=REPORT_FOLDER,
                 overwrite=overwrite)
    data = load_results(results)
    view = default_view(data, metrics, arch, init, budget)
    groups = group_rows(data["rows"])
    methods, whole = _methods(data, data["rows"])
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as err:
        raise output_error(out, err) from None
    try:
        (tmp / FIGURES_DIR).mkdir()
        listed: dict[str, dict[str, str]] = {}
        for dataset in _ordered([r["dataset"] for r in data["rows"]]):
            for stem, title, fig in figures_for(groups, dataset, methods, whole, view):
                fig.savefig(tmp / FIGURES_DIR / f"{stem}.png", dpi=110, bbox_inches="tight")
                listed.setdefault(dataset, {})[title] = f"{FIGURES_DIR}/{stem}.png"
        (tmp / REPORT_FILE).write_text(build_markdown(data, view, listed, str(results)), encoding="utf-8")
        (tmp / MARKER).write_text("report\n", encoding="utf-8")  # td3rec's: a later --overwrite may replace it
        os.chmod(tmp, 0o777 & ~_umask())
        _replace_folder(tmp, out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise output_error(out, err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_folder(new: Path, target: Path) -> None:
    """Rename the complete folder ``new`` onto ``target``; an existing ``target`` is removed only after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
