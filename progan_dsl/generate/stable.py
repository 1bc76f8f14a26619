"""Which generator a checkpoint or run folder deploys: the newest stable stage, EMA weights.

Owns `stable_generator`: from a checkpoint file or a run folder, pick the checkpoint and the stable
stage to use and build that stage's generator with its EMA weights (`Checkpoint.generator`). A
stable module has no fade edges and no alpha input, so what is used is exactly the network that
stage trained.

Rules (in this order):
- a run folder is searched newest checkpoint first; a file is used as it is;
- without `resolution` the stage is the checkpoint's own stage when it is stable; a checkpoint
  taken during a fade-in is skipped in a run folder (an older stable one is used) and refused as a
  single file, since neither of its stable ends is what the network computed at that moment;
- with `resolution` R the checkpoint must hold every parameter of the R stable generator:
  parameter names are stable across stages, so a checkpoint of stage R (or of the fade-in to 2R,
  which still carries R's toRGB) qualifies, a later one has dropped R's toRGB and does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from progan_dsl.checkpoint import Checkpoint, checkpoint_files
from progan_dsl.compiler import Program
from progan_dsl.errors import UserError
from progan_dsl.ir import Stage


@dataclass(frozen=True)
class StableGenerator:
    """A stable-stage generator ready to export or sample, with where it came from."""

    program: Program
    stage: Stage
    G: nn.Module
    checkpoint: Checkpoint
    weights: str  # "G_ema" or "G"

    @property
    def path(self) -> Path:
        assert self.checkpoint.path is not None
        return self.checkpoint.path

    @property
    def images_trained(self) -> int:
        return self.checkpoint.images_shown


def stable_generator(
    source: str | Path,
    *,
    resolution: int | None = None,
    fused: bool | None = None,
    ema: bool = True,
) -> StableGenerator:
    """The stable-stage generator of a checkpoint file or run folder (rules above).

    `fused=None` keeps the spec's `fused_scale`; `fused=False` recompiles without the fusion pass
    (same parameter names, so the same weights load). `UserError` on anything the user can fix:
    a bad path, a damaged file, a resolution the spec does not have, or no checkpoint holding the
    requested stage."""
    files = checkpoint_files(source)
    seen: list[str] = []
    for path in files:
        try:
            ckpt = Checkpoint.read(path)
        except UserError as err:
            if len(files) == 1:
                raise
            seen.append(str(err))
            continue
        if resolution is not None:  # a resolution the spec lacks: say so once, not per file
            ckpt.program().stage(resolution, "stable")
        try:
            G = ckpt.generator(ema=ema, resolution=resolution, fused=fused)
        except UserError as err:
            if len(files) == 1:
                raise
            seen.append(str(err))
            continue
        stage = ckpt.stable_stage(resolution)
        return StableGenerator(
            program=ckpt.program(fused),
            stage=stage,
            G=G,
            checkpoint=ckpt,
            weights="G_ema" if ema else "G",
        )
    wanted = "a stable stage" if resolution is None else f"the {resolution} stable generator"
    hint = " Pass --resolution to pick a stable end of a fade-in." if resolution is None else ""
    raise UserError(f"{source}: no checkpoint holds {wanted}; looked at {'; '.join(seen)}.{hint}")


__all__ = ["StableGenerator", "stable_generator"]
