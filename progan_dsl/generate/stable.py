"""Which generator gets deployed: checkpoint choice, stable stage, module rebuild, EMA weights.

Owns `load_deploy_generator`: from a checkpoint file or a run folder, pick the checkpoint and the
stable stage to ship, recompile the spec stored in that checkpoint (fused or not) and load the EMA
weights into a fresh stable-stage module. A stable module has no fade edges and no alpha input,
so what is exported is exactly the network that stage trained.

Rules (in this order):
- a run folder is searched newest checkpoint first (`RUN/checkpoint-*.pt` or
  `RUN/checkpoints/checkpoint-*.pt`); a file is used as it is;
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
from typing import Any

from torch import nn

from progan_dsl.compiler import Program, compile_spec
from progan_dsl.errors import UserError
from progan_dsl.ir import Stage
from progan_dsl.spec import load_spec_text
from progan_dsl.train.checkpoint import list_checkpoints, load_checkpoint


@dataclass
class DeployGenerator:
    """A stable-stage generator ready to export or sample, with where it came from."""

    program: Program
    stage: Stage
    G: nn.Module
    checkpoint: dict[str, Any]
    path: Path
    weights: str  # "G_ema" or "G"

    @property
    def images_trained(self) -> int:
        return int(self.checkpoint["images_shown"])


def checkpoint_files(source: str | Path) -> list[Path]:
    """Candidate checkpoint files, newest first: the file itself, or those of a run folder."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = list_checkpoints(path) or list_checkpoints(path / "checkpoints")
        if not found:
            raise UserError(f"{path}: no checkpoint-*.pt files in this folder or its checkpoints/")
        return found[::-1]
    raise UserError(f"{path}: no such checkpoint file or run folder")


def _weights_key(state: dict[str, Any], ema: bool) -> str:
    if ema and "G_ema" in state:
        return "G_ema"
    if "G" in state:
        return "G"
    raise UserError(f"{state['path']}: the checkpoint holds no generator weights (G_ema or G)")


def _target_stage(program: Program, state: dict[str, Any], resolution: int | None) -> Stage | None:
    """The stable stage to export from this checkpoint, or None when it cannot provide one."""
    own = Stage(int(state["stage"]["resolution"]), state["stage"]["phase"])
    if resolution is None:
        return own if own.phase == "stable" else None
    valid = program.spec.architecture.resolutions
    if resolution not in valid:
        raise UserError(
            f"--resolution {resolution}: spec '{program.spec.name}' has no such "
            f"resolution (valid: {', '.join(map(str, valid))})"
        )
    return program.stage(resolution, "stable")


def load_deploy_generator(
    source: str | Path,
    *,
    resolution: int | None = None,
    fused: bool | None = None,
    ema: bool = True,
) -> DeployGenerator:
    """The stable-stage generator to deploy from a checkpoint file or run folder (rules above).

    `fused=None` keeps the spec's `fused_scale`; `fused=False` recompiles without the fusion pass
    (same parameter names, so the same state dict loads). Raises `UserError` on anything the user
    can fix: a bad path, a file that is not a checkpoint, a resolution the spec does not have, or
    no checkpoint holding the requested stage."""
    files = checkpoint_files(source)
    seen: list[str] = []
    for path in files:
        state = load_checkpoint(path)
        loaded = load_spec_text(state["spec_text"], state.get("spec_path", str(path)))
        program = compile_spec(loaded, fused=fused)
        stage = _target_stage(program, state, resolution)
        own = f"{path.name}: stage {state['stage']['resolution']}/{state['stage']['phase']}"
        if stage is None:
            seen.append(own)
            continue
        key = _weights_key(state, ema)
        G = program.build("G", stage)
        wanted = G.state_dict()
        weights = state[key]
        missing = [name for name in wanted if name not in weights]
        if missing:
            seen.append(
                f"{own} (lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})"
            )
            continue
        G.load_state_dict({name: weights[name] for name in wanted})
        G.eval().requires_grad_(False)
        return DeployGenerator(
            program=program, stage=stage, G=G, checkpoint=state, path=path, weights=key
        )
    wanted_stage = "a stable stage" if resolution is None else f"the {resolution} stable generator"
    hint = (
        " Pass --resolution to pick a stable end of a fade-in checkpoint."
        if resolution is None
        else ""
    )
    raise UserError(
        f"{source}: no checkpoint holds {wanted_stage}; looked at {'; '.join(seen)}.{hint}"
    )
