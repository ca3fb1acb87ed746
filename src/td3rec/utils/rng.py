"""Capturing and restoring every random number generator a run draws from, for exact resumption.

A resumed run must draw exactly the numbers the uninterrupted run would have drawn, so a checkpoint stores
the state of: the run's explicit ``torch.Generator`` (shuffling, unroll lengths, cut positions, learner
starts), torch's global CPU generator (dropout, model initialisation), every CUDA device's generator when
CUDA is in use, NumPy's and Python's global generators. States are plain tensors, lists and ints, so the
checkpoint loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from td3rec.errors import DataError


def capture_rng(generator: torch.Generator | None, cuda: bool = False) -> dict[str, Any]:
    """The state of ``generator`` and of the global generators, as a checkpointable dict; with ``cuda`` (the
    run uses a CUDA device) the generators of every CUDA device too."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "cuda": list(torch.cuda.get_rng_state_all()) if cuda and torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None) -> None:
    """Put every generator back where :func:`capture_rng` found it."""
    try:
        torch.set_rng_state(state["torch"])
        np_state = state["numpy"]
        np.random.set_state((np_state["name"], np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                             np_state["has_gauss"], np_state["cached_gaussian"]))
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
        if state["cuda"]:
            if not torch.cuda.is_available() or torch.cuda.device_count() < len(state["cuda"]):
                raise DataError("the checkpoint was written on a machine with CUDA devices that are not here; resume "
                                "it on a machine with the same devices")
            torch.cuda.set_rng_state_all(state["cuda"])
        if generator is not None:
            generator.set_state(state["generator"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"the checkpoint's random generator states cannot be restored ({type(err).__name__}); "
                        "it is corrupted or from an incompatible version") from None
