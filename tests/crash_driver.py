"""Child process of the kill-and-resume tests: runs ``td3rec ARGS`` and freezes it at a chosen point so the
test can kill it there with SIGKILL (a real kill, at a known place instead of a race).

Usage: ``python crash_driver.py MARKER N ARGS...``. The run writes its first ``N`` resume checkpoints
normally; when it is about to write checkpoint ``N + 1`` (the steps since checkpoint ``N`` are done and
logged), it appends a torn half line to ``steps.jsonl`` (as a kill in the middle of a write would leave),
creates ``MARKER`` and sleeps until it is killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import td3rec.distill.distiller as distiller
import td3rec.training.trainer as trainer
from td3rec.cli import main
from td3rec.utils.run_state import save_run_state


def freeze_at(marker: Path, n_saved: int):
    count = 0

    def save(path, kind, state):
        nonlocal count
        if count == n_saved:
            log = Path(path).parent / "steps.jsonl"
            if log.exists():
                with open(log, "a", encoding="utf-8") as handle:
                    handle.write('{"step": 999, "loss": 0.12')
            marker.write_text("frozen")
            time.sleep(600)
        save_run_state(path, kind, state)
        count += 1

    return save


if __name__ == "__main__":
    marker, n = Path(sys.argv[1]), int(sys.argv[2])
    distiller.save_run_state = trainer.save_run_state = freeze_at(marker, n)
    sys.exit(main(sys.argv[3:]))
