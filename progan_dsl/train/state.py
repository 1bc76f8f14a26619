"""The training state a checkpoint holds besides weights, as plain functions the `Trainer` uses
to save and restore itself: every random number generator a run touches (the training
generator, torch, numpy, Python, CUDA) and optimizer state with this run's hyperparameters.
Malformed optimizer or RNG state is a `UserError` naming the file.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from progan_dsl.errors import UserError


def rng_state(gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every RNG a run touches: the training generator, torch, numpy, Python (and CUDA)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "train": gen.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(
    state: dict[str, Any], gen: torch.Generator, device: torch.device, where: object = "checkpoint"
) -> None:
    """Restore what `rng_state` saved; `UserError` naming `where` when it is malformed."""
    try:
        _set_rng_state(state, gen, device)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise UserError(
            f"{where}: its RNG state is malformed ({type(err).__name__}: {err})"
        ) from None


def _set_rng_state(state: dict[str, Any], gen: torch.Generator, device: torch.device) -> None:
    gen.set_state(state["train"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_optimizer_state(
    opt: torch.optim.Optimizer, state: dict[str, Any], where: object, hyper: dict[str, Any]
) -> None:
    """A checkpoint's optimizer state into `opt`, then this run's hyperparameters (`hyper`)."""
    try:
        opt.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise UserError(
            f"{where}: its optimizer state does not fit the networks ({type(err).__name__}: {err})"
        ) from None
    for group in opt.param_groups:
        group.update(hyper)


__all__ = ["load_optimizer_state", "rng_state", "set_rng_state"]
