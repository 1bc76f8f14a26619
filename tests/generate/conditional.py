"""A class-conditional run folder for the generate, export and metrics tests: weights-only
checkpoints of tests/specs/tiny_conditional.yaml (10 classes, 16x16 RGB), as progan-train would
leave them."""

from __future__ import annotations

from pathlib import Path

import torch

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.compiler import Program, compile_spec
from tests.conftest import ROOT

TINY_CONDITIONAL = ROOT / "tests" / "specs" / "tiny_conditional.yaml"
NUM_CLASSES = 10


def write_conditional_run(folder: Path, resolution: int = 16, seed: int = 5) -> Path:
    """A run folder holding one stable checkpoint of the tiny conditional spec (G EMA differs
    from G; biases and weights random, so each class draws visibly different images). Returns
    the checkpoint file."""
    program = compile_spec(TINY_CONDITIONAL)
    stage = program.stage(resolution, "stable")
    torch.manual_seed(seed)
    G, G_ema = program.build("G", stage), program.build("G", stage)
    with torch.no_grad():
        for p in G_ema.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ckpt = Checkpoint.from_weights(
        program.loaded, stage, G=G.state_dict(), G_ema=G_ema.state_dict(), images_shown=4000
    )
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    return ckpt.save(folder / "checkpoints")


def conditional_program() -> Program:
    return compile_spec(TINY_CONDITIONAL)
