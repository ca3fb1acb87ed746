"""Time budgets and catalogue-size defaults: the planner's arithmetic, its cosine against torch's, a budget run
end to end through `td3rec distill`, and the large-catalogue settings applied only where the user set nothing."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from td3rec.cli import main
from td3rec.distill import config as distill_config
from td3rec.distill.config import DistillConfig, apply_size_defaults, size_defaults
from td3rec.distill.schedule import SAFETY, VALIDATION_GUESS, TimeBudget, cosine_factor, parse_duration
from td3rec.errors import ConfigError

from pipeline_support import DISTILL_TINY


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1.5h", 5400), (" 2 min ", 120),
                                           (45, 45), (".5h", 1800)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5m", "5d", "nan", "inf", float("nan"), float("inf"), -1])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_cosine_factor_is_torchs_cosine_annealing():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=13)
    for t in range(14):
        assert abs(opt.param_groups[0]["lr"] - 0.3 * cosine_factor(t, 13)) < 1e-12, t
        opt.step()
        sched.step()
    assert cosine_factor(20, 13) == 0.0  # past the plan it stays at zero (torch's would rise again)


def test_plan_arithmetic():
    budget = TimeBudget(seconds=100, steps_per_epoch=10, eval_every=1)
    # before any validation: (100 (1 - safety) - 6) (1 - guess) / 2 more steps after the 3 done
    more = int((100 * (1 - SAFETY) - 6) * (1 - VALIDATION_GUESS) / 2)
    assert budget.plan(3, 6.0, [2.0, 2.0, 2.0], []) == 3 + more
    # with a measured validation of 5 s every 10 steps: each step costs 2 + 0.5; the final validation is reserved
    assert budget.plan(3, 6.0, [2.0, 2.0, 2.0], [5.0]) == 3 + int((100 * (1 - SAFETY) - 6 - 5) / 2.5)
    assert TimeBudget(100, 10, 1, max_steps=7).plan(3, 6.0, [2.0] * 3, []) == 7
    assert budget.plan(30, 120.0, [2.0] * 3, [5.0]) == 30  # over budget: nothing more
    assert budget.out_of_time(95.0, [2.0], [5.0]) and not budget.out_of_time(90.0, [2.0], [5.0])


def test_time_budget_run_plans_anneals_and_stops_in_time(toy_data, toy_teacher, tmp_path):
    out = tmp_path / "budget"
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--out", str(out),
                 *DISTILL_TINY, "--time-budget", "6s", "--epochs", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert metrics["status"] == "finished" and metrics["time_budget_seconds"] == 6
    planned = metrics["planned_steps"]
    assert metrics["outer_steps"] == len(steps) > 4  # more than the one epoch --epochs asks for: the budget rules
    assert len(steps) <= planned
    assert metrics["seconds"] <= 6 * 1.5
    outer_lr = yaml.safe_load((out / "config.yaml").read_text())["outer_lr"]
    # every step's lr is the cosine over the plan in force then (recorded with the step)
    for record in steps:
        assert record["lr"] == pytest.approx(outer_lr * cosine_factor(record["step"], record["planned"]), abs=1e-12)
    # a step runs only inside the plan in force; the final validation may re-plan after the last step
    assert all(record["step"] <= record["planned"] for record in steps)


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_cpu_budget_clock_does_not_count_time_off_the_cpu(toy_data, toy_teacher, tmp_path, monkeypatch, clock):
    """Every outer step also sleeps 0.4 s (as if another process held the core): the wall-clock budget counts
    the sleeps and stops early; the CPU clock does not, so its run goes on past the budget in wall time."""
    import time

    from td3rec.distill.inner_loop import InnerLoop

    unroll = InnerLoop.unroll

    def sleepy_unroll(self, *args, **kwargs):
        time.sleep(0.4)
        return unroll(self, *args, **kwargs)

    monkeypatch.setattr(InnerLoop, "unroll", sleepy_unroll)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (one thread: its CPU time is not inflated by idle threads spinning under load)
    try:
        out = tmp_path / clock
        started = time.perf_counter()
        assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--out", str(out),
                     *DISTILL_TINY, "--time-budget", "3s", "--set", f"time_budget_clock={clock}"]) == 0
        wall = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["time_budget_clock"] == clock
    slept = 0.4 * metrics["outer_steps"]
    if clock == "wall":
        assert slept <= 3
    else:
        assert slept > 3 and wall > 3 + 0.4  # the sleeps were not charged to the budget


def test_size_defaults_apply_only_to_large_catalogues_and_unset_settings():
    assert size_defaults(distill_config.LARGE_CATALOGUE) == {}
    assert apply_size_defaults(DistillConfig(), 1349, {}) == DistillConfig()
    large = apply_size_defaults(DistillConfig(outer_lr=0.05), 12101, {"outer_lr": 0.05, "inner": {"lr": 0.01}})
    expected = size_defaults(12101)
    assert large.outer_lr == 0.05  # given by the user
    assert large.support_size == expected["support_size"] and large.inner.negatives == expected["inner.negatives"]
    assert large.window == expected["window"] and large.real_batch_size == expected["real_batch_size"]
    untouched = apply_size_defaults(DistillConfig(), 12101, {"inner": {"negatives": 0}, "support_size": 0})
    assert untouched.inner.negatives == 0 and untouched.support_size == 0 and untouched.outer_lr == expected["outer_lr"]


def test_distill_command_records_size_defaults_in_its_config(toy_data, toy_teacher, tmp_path, monkeypatch):
    """With the threshold below the toy catalogue, `td3rec distill` writes the large settings into config.yaml,
    except the ones given on the command line; the summary file records its support."""
    from td3rec.summary.io import load_summary

    monkeypatch.setattr(distill_config, "LARGE_CATALOGUE", 5)
    monkeypatch.setitem(distill_config.LARGE_CATALOGUE_SETTINGS, "support_size", 4)
    monkeypatch.setitem(distill_config.LARGE_CATALOGUE_SETTINGS, "select_metric", "full:MRR@10")
    out = tmp_path / "large"
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--out", str(out),
                 *DISTILL_TINY, "--max-steps", "2", "--outer-lr", "0.07"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["outer_lr"] == 0.07 and saved["support_size"] == 4
    assert saved["window"] == 2  # given by DISTILL_TINY
    assert saved["inner"]["negatives"] == distill_config.LARGE_CATALOGUE_SETTINGS["inner.negatives"]
    _, meta = load_summary(out / "summary_best.safetensors")
    assert meta["support_size"] == 4
