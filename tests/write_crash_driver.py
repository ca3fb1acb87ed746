"""Child process of the leftover-temporary-file tests: runs ``td3rec ARGS`` and freezes it *inside* the atomic
write of a resume checkpoint, so the test can SIGKILL it while the temporary file exists (as a kill during
the write of ``resume.pt`` would leave it).

Usage: ``python write_crash_driver.py MARKER N ARGS...``: the first ``N`` resume checkpoints are written
normally; checkpoint ``N + 1`` is half written to its temporary file, then ``MARKER`` is created and the
process sleeps until it is killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import td3rec.distill.distiller as distiller
import td3rec.training.trainer as trainer
from td3rec.cli import main
from td3rec.utils.atomic import atomic_path
from td3rec.utils.run_state import save_run_state


def freeze_in_write(marker: Path, n_saved: int):
    count = 0

    def save(path, kind, state):
        nonlocal count
        if count == n_saved:
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"PK\x03\x04 half of a checkpoint")
                marker.write_text(tmp.name)
                time.sleep(600)
        save_run_state(path, kind, state)
        count += 1

    return save


if __name__ == "__main__":
    marker, n = Path(sys.argv[1]), int(sys.argv[2])
    distiller.save_run_state = trainer.save_run_state = freeze_in_write(marker, n)
    sys.exit(main(sys.argv[3:]))
