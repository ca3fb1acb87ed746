"""Ctrl-C and SIGTERM: a td3rec command ends with one line and the shell's exit code for the signal.

:func:`handle_signals` (used by :func:`td3rec.cli.main`) turns SIGINT and SIGTERM into :class:`Interrupted` (a
``KeyboardInterrupt``, so every ``finally`` runs: locks are released, a benchmark writes its table) and
remembers the first one received. The command then prints ``td3rec COMMAND: interrupted`` (or ``terminated``)
and exits ``128 + signal``: 130 for Ctrl-C, 143 for SIGTERM. Outputs are written atomically and runs
checkpoint as they go, so the run resumes with ``--resume`` as after any other stop.

A multi-process distillation (``--nproc N``) ends the same way: the launcher, which torch's elastic agent
runs, receives the signal, sends it to every worker, waits for them (SIGKILL after a grace period) and prints
the one line (:func:`td3rec.distill.distributed.launch`). The workers it started carry :data:`LAUNCHED_ENV`
and end silently: an error that follows a signal (a collective whose peer has stopped) is part of the stop,
not a failure of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

#: set in the environment of the workers that ``--nproc`` launches (the launcher's pid): they stop silently
LAUNCHED_ENV = "TD3REC_LAUNCHER_PID"
#: the signals a command ends on with one line
HANDLED = (signal.SIGINT, signal.SIGTERM)

_received: int | None = None


class Interrupted(KeyboardInterrupt):
    """The command was stopped by ``signum`` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


def exit_code(signum: int) -> int:
    """The shell's exit code of a process ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


def received() -> int | None:
    """The first signal this process received while :func:`handle_signals` was active, else ``None``."""
    return _received


def _raise(signum: int, frame: object) -> None:
    global _received
    if _received is None:
        _received = int(signum)
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise :class:`Interrupted`; the previous handlers come back after
    (only the main thread may set handlers: elsewhere this does nothing)."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    previous = {sig: signal.signal(sig, _raise) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def interruption_line(command: str, signum: int) -> str | None:
    """The one line a command stopped by ``signum`` prints, or ``None`` in a worker of a ``--nproc`` launch
    (its launcher prints it)."""
    if os.environ.get(LAUNCHED_ENV):
        return None
    what = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
    return f"td3rec {command}: {what}"
