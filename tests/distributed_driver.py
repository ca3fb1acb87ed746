"""Worker of the multi-process tests: runs ``td3rec ARGS`` in a torchrun process, records every file the
process writes (so the test can check that only process 0 writes outputs) and can freeze process 0 at a
known point (so the test can kill the group there).

Usage: ``python -m torch.distributed.run ... distributed_driver.py RECORD_DIR ARGS...``. A Python audit hook
sees every file opened for writing (by ``open``/``os.open``, whatever library calls them) and every rename,
removal and folder creation; at exit the process writes the paths to ``RECORD_DIR/writes-rank{RANK}.json``.
Each process writes its pid to ``RECORD_DIR/pid-rank{RANK}`` at start. With ``TD3REC_TEST_FREEZE=N`` the run
writes its first N resume checkpoints, then freezes where it would write the next one (as ``crash_driver``
does: a torn line in ``steps.jsonl``, ``RECORD_DIR/frozen`` created, sleep until killed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
#: audit events that change the file system, and the position of the path they change
EVENTS = {"os.rename": 1, "os.replace": 1, "os.remove": 0, "os.rmdir": 0, "os.mkdir": 0, "shutil.rmtree": 0}


def record_writes(paths: list[str]):
    def hook(event: str, args: tuple) -> None:
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                paths.append(os.fsdecode(path))
        elif event in EVENTS and len(args) > EVENTS[event]:
            target = args[EVENTS[event]]
            if isinstance(target, (str, bytes, os.PathLike)):
                paths.append(os.fsdecode(target))

    return hook


if __name__ == "__main__":
    record_dir = Path(sys.argv[1])
    rank = os.environ.get("RANK", "0")
    (record_dir / f"pid-rank{rank}").write_text(str(os.getpid()))
    if os.environ.get("TD3REC_TEST_FREEZE"):
        import td3rec.distill.distiller as distiller
        from crash_driver import freeze_at

        distiller.save_run_state = freeze_at(record_dir / "frozen", int(os.environ["TD3REC_TEST_FREEZE"]))
    writes: list[str] = []
    sys.addaudithook(record_writes(writes))
    from td3rec.cli import main

    code = main(sys.argv[2:])
    found = [str(Path(p).resolve()) for p in writes]
    (record_dir / f"writes-rank{rank}.json").write_text(json.dumps(found))
    sys.exit(code)
