"""A Trainer's state and the checkpoint: the two directions, in one place.

Owns what a checkpoint holds of a run beyond the run folder's bookkeeping: the weights of G, D and
G EMA, both optimizers, every random number generator a run touches (the training generator,
torch, numpy, Python, CUDA) and the position; `checkpoint_of` takes them, `restore` puts them back
(exactly when the file holds the training state; at the start of its stage's phase with fresh
optimizers when it holds weights only, e.g. an imported network). Malformed optimizer or RNG
state is a `UserError` naming the file.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from progan_dsl.checkpoint import Checkpoint, TrainingState
from progan_dsl.errors import UserError

if TYPE_CHECKING:
    from progan_dsl.train.trainer import Trainer


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


def checkpoint_of(t: Trainer, loader_state: dict[str, Any], extra: dict[str, Any]) -> Checkpoint:
    """The complete state of `t` as a `Checkpoint` (not yet written)."""
    assert t.phase is not None and t.G is not None and t.D is not None
    assert t.G_ema is not None and t.opt_G is not None and t.opt_D is not None
    training = TrainingState(
        opt_G=t.opt_G.state_dict(),
        opt_D=t.opt_D.state_dict(),
        rng=rng_state(t.gen, t.device),
        loader=loader_state,
    )
    return Checkpoint.from_weights(
        t.program.loaded,
        t.phase.stage,
        G=t.G.state_dict(),
        D=t.D.state_dict(),
        G_ema=t.G_ema.state_dict(),
        images_shown=t.images_shown,
        training=training,
        extra={
            "seed": t.seed,
            "phase_index": t.phase.index,
            "world_size": t.env.world_size,
            **extra,
        },
    )


def restore(t: Trainer, ckpt: Checkpoint) -> None:
    """Put `t` where `ckpt` left it (see the module docstring)."""
    phase = t.schedule.phase_of(ckpt.stage)
    t.G = t.D = t.G_ema = None
    t.opt_G = t.opt_D = None
    G, D, G_ema = (t.fresh(net, phase) for net in ("G", "D", "G"))
    G.load_state_dict(ckpt.G)
    G_ema.load_state_dict(ckpt.G_ema)
    if ckpt.D is not None:
        D.load_state_dict(ckpt.D)
    t.install(phase, G, D, G_ema)
    t.pending.clear()
    if ckpt.training is None or ckpt.D is None:
        t.images_shown = phase.start
        return
    t.images_shown = ckpt.images_shown
    spec_opt = t.training.optimizer  # hyperparameters from this spec, kernels for here
    hyper = {
        "lr": phase.learning_rate,
        "betas": (spec_opt.beta1, spec_opt.beta2),
        "eps": spec_opt.eps,
        "fused": True if t.cuda else None,
        "foreach": None,
    }
    for opt, state in ((t.opt_G, ckpt.training.opt_G), (t.opt_D, ckpt.training.opt_D)):
        assert opt is not None
        load_optimizer_state(opt, state, ckpt.path, hyper)
    set_rng_state(ckpt.training.rng, t.gen, t.device, ckpt.path)


__all__ = ["checkpoint_of", "restore", "rng_state", "set_rng_state"]
