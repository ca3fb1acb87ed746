"""Outer-step schedules that fit a wall-clock budget (``td3rec distill --time-budget 30m``).

A distillation with a budget does not know in advance how many outer steps fit: that depends on the data, the
settings and the machine. :class:`TimeBudget` plans the number from what it measures — the median of the
recent outer steps and the mean validation time — so that the steps, the validations still due (one every
``eval_every`` outer epochs, and the final one) fit in what is left; it plans once a few steps are measured
and again after each validation. The cosine schedule of the outer learning rate (:func:`cosine_factor`) spans
the planned number, so a budget run anneals to zero at its end like a run of fixed length.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass
from typing import Callable

from td3rec.errors import ConfigError

#: outer steps timed before the first plan
CALIBRATION_STEPS = 3
#: share of the budget kept back for what the plan does not see (checkpoints, saves, timing noise)
SAFETY = 0.03
#: before any validation is measured, the share of the remaining budget reserved for validations
VALIDATION_GUESS = 0.15
#: the plan's horizon before calibration (the cosine factor is 1 to within 1e-17 on the first steps)
UNPLANNED = 10**9

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"30m"``, ``"1.5h"`` (a bare number is seconds)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ConfigError(f"time budget {text!r} is not a duration; write e.g. 1800, 90s, 30m or 1.5h")
        unit = (match.group(2) or "s").lower()[0]
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"time budget must be a finite number of seconds >= 0, got {text!r}")
    return seconds


def budget_clock(kind: str) -> Callable[[], float]:
    """The clock a budget counts: ``wall`` (``time.perf_counter``) or ``cpu`` (``time.process_time``: this
    process's CPU seconds, every thread counted)."""
    return time.process_time if kind == "cpu" else time.perf_counter


def cosine_factor(step: int, total: int) -> float:
    """Cosine annealing from 1 at step 0 to 0 at ``total`` (and after): ``CosineAnnealingLR``'s closed form."""
    total = max(total, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


@dataclass
class TimeBudget:
    """Plans the outer steps of a run that must finish within ``seconds``.

    Attributes:
        seconds: the whole budget (validations included; teacher training excluded).
        steps_per_epoch: outer steps per outer epoch (a validation follows every ``eval_every`` epochs).
        eval_every: epochs between validations (0: only the final one).
        max_steps: a cap on the plan (0 = none).
    """

    seconds: float
    steps_per_epoch: int
    eval_every: int
    max_steps: int = 0

    def plan(self, done: int, elapsed: float, step_seconds: list[float], validation_seconds: list[float]) -> int:
        """Total outer steps (done included) that fit: ``done`` steps took ``elapsed`` seconds so far.

        Uses the median of the last 20 step times and the mean validation time (a guessed share of the
        budget before the first validation)."""
        if not step_seconds:
            return UNPLANNED
        step = statistics.median(step_seconds[-20:])
        left = self.seconds * (1 - SAFETY) - elapsed
        if validation_seconds:
            validation = statistics.fmean(validation_seconds)
            per_step = step + (validation / (self.steps_per_epoch * self.eval_every) if self.eval_every else 0.0)
            more = (left - validation) / per_step  # the final validation, then steps with their validations
        else:
            more = left * (1 - VALIDATION_GUESS) / step
        total = done + max(int(more), 0)
        total = max(total, done, 1)
        return min(total, self.max_steps) if self.max_steps else total

    def out_of_time(self, elapsed: float, step_seconds: list[float], validation_seconds: list[float]) -> bool:
        """Whether one more step (and the final validation) would overrun the budget."""
        step = statistics.median(step_seconds[-20:]) if step_seconds else 0.0
        validation = statistics.fmean(validation_seconds) if validation_seconds else 0.0
        return elapsed + step + validation > self.seconds
