"""The cell plan: every cell of a grid, in run order, each keyed by a hash of everything its result depends on.

The key is what makes a grid resumable without bookkeeping (a cell whose file exists is done) and what makes a
changed setting recompute exactly the cells it affects; so the device is left out of a cell's settings, and so
are settings added after grids were first run while they hold the value that reproduces the earlier behaviour.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from td3rec.config import to_dict
from td3rec.experiments.benchmark.config import DISTILL_KINDS, BenchmarkConfig

@dataclass
class Cell:
    """One learner of the grid; ``key`` is the hash of ``settings``."""

    dataset: str
    method: str
    kind: str
    n: int | None
    seq_len: int | None
    arch: str
    init: str
    seed: int
    settings: dict
    key: str

    @property
    def family(self) -> str:
        return "whole" if self.kind == "whole" else "distill" if self.kind in DISTILL_KINDS else "subset"

    @property
    def label(self) -> str:
        budget = "" if self.n is None else f" n={self.n} L={self.seq_len}"
        return f"{self.dataset} {self.method}{budget} {self.arch} {self.init} seed {self.seed}"

    def header(self) -> dict:
        return {"key": self.key, "dataset": self.dataset, "method": self.method, "kind": self.kind,
                "family": self.family, "n": self.n, "seq_len": self.seq_len, "arch": self.arch, "init": self.init,
                "seed": self.seed}


def settings_key(settings: dict) -> str:
    """A stable hash of resolved settings (16 hex digits)."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def plan_cells(config: BenchmarkConfig, fingerprints: dict[str, str]) -> list[Cell]:
    """Every cell of the grid, in run order (dataset, slice, method, budget, architecture, protocol, seed); a
    cell in several slices appears once."""
    cells: list[Cell] = []
    seen: set[str] = set()
    seeds = range(config.seed, config.seed + config.seeds)
    base = {"max_len": config.max_len, "eval": to_dict(config.eval)}

    def add(cell_args: tuple, settings: dict) -> None:
        key = settings_key(settings)
        if key not in seen:
            seen.add(key)
            cells.append(Cell(*cell_args, settings, key))

    for ds in config.datasets:
        data = {"dataset": ds.name, "fingerprint": fingerprints[ds.name]}
        teacher = without_device(to_dict(config.teacher_config(config.teacher.model)))
        for part in config.resolved_slices():
            for method in (m for m in config.methods if m.name in part.methods):
                kind = config.kind_of(method)
                if kind == "whole":
                    for arch in part.archs:
                        for seed in seeds:
                            add((ds.name, method.name, kind, None, None, arch, "full-data", seed),
                                {**base, **data, "method": method.name, "kind": kind, "arch": arch, "seed": seed,
                                 "model_options": config.options_for(arch),
                                 "whole": without_device(to_dict(config.whole_config(arch, seed)))})
                    continue
                for n in part.budgets:
                    for L in part.seq_lens:
                        source = {"teacher": teacher}
                        if kind in DISTILL_KINDS:
                            source["distill"] = without_device(to_dict(config.distill_config(method, n, L, ds)))
                        elif config.distill.item_factor_scale != 1:  # (a subset shares the summaries' scaled V)
                            source["item_factor_scale"] = config.distill.item_factor_scale
                        for arch in part.archs:
                            for init in part.inits:
                                for seed in seeds:
                                    s = {**base, **data, **source, "method": method.name, "kind": kind, "n": n,
                                         "seq_len": L, "arch": arch, "init": init, "seed": seed,
                                         "model_options": config.options_for(arch),
                                         "training": to_dict(config.training)}
                                    if init == "reference":
                                        s["reference_teacher"] = without_device(to_dict(config.teacher_config(arch)))
                                    add((ds.name, method.name, kind, n, L, arch, init, seed), s)
    return cells


#: settings added after grids were first run, with the value that reproduces the earlier behaviour: left out of a
#: cell's settings (and so of its key) at that value, so that finished cells stay valid
_LATER_DEFAULTS = {"precision": "fp32", "support_size": 0, "support_refresh": 1, "outer_negatives": 0,
                   "time_budget": 0, "inner.negatives": 0, "learners_per_step": 0, "inner.augment_by_model": {},
                   "balance_gradients": False, "balance_window": 25, "learner_start": "trajectory",
                   "init_from": "noise", "init_fit_steps": 200,
                   "meta_item_factor": False, "item_factor_scale": 1.0,
                   "time_budget_clock": "wall"}


def without_device(settings: dict) -> dict:
    """Settings without the device (a result does not depend on where it was computed) and without later-added
    settings (dotted keys reach into nested sections) at their neutral value."""
    out = {k: v for k, v in settings.items() if k != "device"}
    for key, neutral in _LATER_DEFAULTS.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                break
            node[part] = dict(node[part])  # a copy: the caller's settings are not changed
            node = node[part]
        else:
            if leaf in node and node[leaf] == neutral:
                del node[leaf]
    return out
