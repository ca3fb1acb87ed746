"""Sizes against the memory the machine has: an absurd setting (``max_len=100000000``, a hidden size of a
billion, a million synthetic sequences) is one error line before any work, not a crash hours later.

The estimates count the arrays a run allocates up front and keeps (the padded input matrices, the learner's
parameters with their gradients and Adam moments, the summary's factors); they are lower bounds of what a
run needs, so a refused setting could never have run, while an accepted one may still need more.
"""

from __future__ import annotations

import logging
import os

import torch

from td3rec.errors import ConfigError

log = logging.getLogger(__name__)

#: bytes of one input id (int64) and of one parameter (float32)
ID_BYTES, FLOAT_BYTES = 8, 4
#: copies of every trained parameter a run holds: the weights, their gradients and Adam's two moments
TRAINED_COPIES = 4


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` on Linux, else the physical memory);
    ``None`` when the platform does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(n_bytes: int, what: str, advice: str) -> None:
    """A :class:`ConfigError` when ``what`` needs more than the memory available; ``advice`` says what to
    change."""
    available = available_memory()
    log.debug("%s needs about %s (available: %s)", what, format_bytes(n_bytes),
              format_bytes(available) if available else "unknown")
    if available is not None and n_bytes > available:
        raise ConfigError(f"{what} needs at least {format_bytes(n_bytes)} of memory, more than this machine has "
                          f"available ({format_bytes(available)}); {advice}")


def input_bytes(rows: int, max_len: int) -> int:
    """The padded ``[rows, max_len]`` int64 input matrix of ``rows`` examples."""
    return int(rows) * int(max_len) * ID_BYTES


def model_bytes(model: str, n_items: int, max_len: int, options: dict | None = None) -> int:
    """Memory of learner ``model`` in training: its parameters (counted on torch's ``meta`` device, nothing is
    allocated) times :data:`TRAINED_COPIES`."""
    from td3rec.models.registry import build_model

    with torch.device("meta"):
        learner = build_model(model, n_items, max_len, **(options or {}))
    return sum(p.numel() for p in learner.parameters()) * FLOAT_BYTES * TRAINED_COPIES


def check_learner_memory(what: str, model: str, n_items: int, max_len: int, options: dict | None,
                         example_rows: int, extra_bytes: int = 0) -> None:
    """Refuse a run whose learner (``model`` over ``n_items`` items, inputs of ``max_len``) with its padded
    inputs of ``example_rows`` rows, plus ``extra_bytes``, cannot fit in memory."""
    need = model_bytes(model, n_items, max_len, options) + input_bytes(example_rows, max_len) + extra_bytes
    check_memory(need, what, "lower max_len, the learner's sizes (model_options) or the summary's sizes")
