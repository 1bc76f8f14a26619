"""Checkpoints: complete, atomic, safely loaded.

A checkpoint is one file written by `torch.save` holding only tensors and plain data (dicts,
lists, str, int, float, bool), loaded back with `torch.load(weights_only=True)`: no pickled code
runs from a checkpoint file. Writing goes to a temporary file in the same folder, is fsynced, then
renamed over the final name, so a kill never leaves a half-written checkpoint under a real name.

Layout of the dict (format "progan-dsl-checkpoint", version 1):
    spec_text, spec_hash, spec_path       the spec the run was compiled from
    stage: {"resolution", "phase"}        the growth stage the modules belong to
    images_shown: int                     position in the schedule (the schedule is a pure
                                          function of it)
    G, D, G_ema: state dicts              keys are stable node names (b64_conv1.weight)
    opt_G, opt_D: optimizer state dicts   (may be absent in exported/pruned files)
    rng: {"torch", "numpy", "python"}      RNG states for bit-exact resume
    loader: dict                          data loader position
    scaler: None                          no loss scaler (bf16 autocast needs none)
    extra: dict                           seed, kimg, data, run, world_size, phase_index,
                                          elapsed_s, tick_window (stats of the unfinished tick)
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_atomic_with

FORMAT = "progan-dsl-checkpoint"
VERSION = 1
PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")


def checkpoint_name(images_shown: int) -> str:
    return f"checkpoint-{images_shown:09d}.pt"


def save_checkpoint(state: dict[str, Any], folder: str | Path, *, keep: int | None = None) -> Path:
    """Write `state` atomically as `folder/checkpoint-<images>.pt`; keep the newest `keep`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    final = folder / checkpoint_name(int(state["images_shown"]))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())

    write_atomic_with(final, write)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)
    if keep is not None:
        for old in list_checkpoints(folder)[:-keep]:
            old.unlink(missing_ok=True)
    return final


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in a folder, oldest first (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(PATTERN.match(p.name).group(1)))  # type: ignore[union-attr]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file with safe deserialisation; `UserError` if it is not one."""
    path = Path(path)
    if path.is_dir():
        latest = list_checkpoints(path) or list_checkpoints(path / "checkpoints")
        if not latest:
            raise UserError(f"{path}: no checkpoint-*.pt files in this folder")
        path = latest[-1]
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a checkpoint (progan-train writes checkpoint-*.pt files "
                        "in torch.save format; this file is something else)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file to the user
        raise UserError(f"{path}: not a loadable progan-dsl checkpoint ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a progan-dsl checkpoint")
    if state.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {state.get('version')} is not supported "
                        f"(supported: {VERSION})")
    state["path"] = str(path)
    return state


def load_generator(path: str | Path, *, ema: bool = True, map_location: str = "cpu") -> tuple[Any, Any, torch.nn.Module, dict[str, Any]]:
    """(program, stage, generator module, checkpoint) from a checkpoint file or run folder.

    The program is compiled from the spec text stored in the checkpoint, so a checkpoint
    stands alone. The generator is the EMA copy unless `ema=False`, in eval mode.
    """
    from progan_dsl.compiler import compile_spec
    from progan_dsl.ir import Stage
    from progan_dsl.spec import load_spec_text

    state = load_checkpoint(path, map_location)
    loaded = load_spec_text(state["spec_text"], state.get("spec_path", "<checkpoint>"))
    program = compile_spec(loaded)
    stage = Stage(int(state["stage"]["resolution"]), state["stage"]["phase"])
    G = program.build("G", stage)
    key = "G_ema" if ema and "G_ema" in state else "G"
    G.load_state_dict(state[key])
    G.eval().requires_grad_(False)
    return program, stage, G, state
