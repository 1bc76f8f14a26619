"""The checkpoint: one typed file shared by train, export, metrics, generate and import.

Owns the on-disk format, its one writer (`Checkpoint.save`) and its one reader
(`Checkpoint.load`), the newest-checkpoint rule of a run folder, integrity and structure checks,
and the way back from a checkpoint to networks (`.program()`, `.generator()`).

File: one `torch.save` zip archive holding only tensors and plain data, read back with
`torch.load(weights_only=True)`, so no pickled code runs from a checkpoint. Before it is
unpickled, every member's CRC-32 is checked (`zipfile.testzip`): a flipped byte or a truncated file
is refused with a clear message instead of loading different numbers. The structure is validated
once, here, with one message; weights are checked against the modules their stage compiles to.
Writes go to a temporary file beside the target, fsynced and renamed, so a kill never leaves a
half-written checkpoint under a real name.

Layout of the dict (format "progan-dsl-checkpoint", version 1):
    spec_text, spec_hash, spec_path       the spec the networks were compiled from (standalone)
    stage: {"resolution", "phase"}        the growth stage the modules belong to
    images_shown: int                     position in the schedule (a pure function of it)
    G, D, G_ema: state dicts              keys are stable node names (b64_conv1.weight);
                                          D may be absent (generator-only files)
    opt_G, opt_D, rng, loader             the training state (absent in weights-only files,
                                          e.g. imported networks; such a file can start a run
                                          but not resume one bit for bit)
    scaler: None                          no loss scaler (bf16 autocast needs none)
    extra: dict                           the run state (`RunState`, typed on reading): seed,
                                          world_size, phase_index, held_images, repeat, kimg,
                                          data, run, elapsed_s, tick_window
    info: dict                            provenance (e.g. imported_from), plain values
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from progan_dsl.errors import UserError
from progan_dsl.fsutil import fsync_dir, write_atomic_with
from progan_dsl.ir import Stage
from progan_dsl.ir.pipeline import PHASES

if TYPE_CHECKING:
    from torch import nn

    from progan_dsl.compiler import Program
    from progan_dsl.spec import LoadedSpec

FORMAT = "progan-dsl-checkpoint"
VERSION = 1
PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")
TRAINING_KEYS = ("opt_G", "opt_D", "rng", "loader")

StateDict = dict[str, Tensor]


def checkpoint_name(images_shown: int) -> str:
    return f"checkpoint-{images_shown:09d}.pt"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files of a folder, oldest first (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(PATTERN.match(p.name).group(1)))  # type: ignore[union-attr]


def checkpoint_files(source: str | Path) -> list[Path]:
    """The candidates a path names, newest first: the file itself, or the checkpoints of a run
    folder (`RUN/checkpoints/checkpoint-*.pt`, or a folder of checkpoint files)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
        if not found:
            raise UserError(f"{path}: no checkpoint-*.pt files in this folder or its checkpoints/")
        return found[::-1]
    raise UserError(f"{path}: no such checkpoint file or run folder")


@dataclass(frozen=True, eq=False)
class TrainingState:
    """What resuming bit for bit needs besides the weights."""

    opt_G: dict[str, Any]
    opt_D: dict[str, Any]
    rng: dict[str, Any]
    loader: dict[str, Any]


@dataclass(frozen=True)
class RunState:
    """The run's bookkeeping a checkpoint carries besides weights and optimizer state: written
    by the trainer, read back on resume, each field checked for its type on reading."""

    seed: int = 0
    world_size: int = 1
    phase_index: int = 0
    held_images: int = 0  # images shown when the current group of minibatch_repeats began
    repeat: int = 0  # iterations of that group already done
    kimg: float | None = None  # the --kimg the run was started with (None: the spec's)
    data: str | None = None  # the dataset folder
    run: str | None = None  # the run folder's name
    elapsed_s: float = 0.0  # training seconds of all invocations so far
    tick_window: tuple[tuple[float, ...], ...] = ()  # loss rows of the unfinished tick
    # training.augment (progan_dsl.train.augmenter): p, the heuristic's running sums, the last
    # interval's heuristic, D steps into the interval, whether one has completed
    augment_p: float | None = None  # None: the run does not augment
    augment_signs: float = 0.0
    augment_count: float = 0.0
    augment_r: float = 0.0
    augment_steps: int = 0
    augment_adjusted: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["tick_window"] = [list(row) for row in self.tick_window]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], p: _Problems) -> RunState | None:
        """The run state of a file, or None with `p` told what is wrong. Unknown keys are kept
        out (an older or newer writer's bookkeeping)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            kind = _RUN_STATE_TYPES[f.name]
            if value is None and None in kind:
                values[f.name] = None
            elif int in kind and _is_int(value) and value >= 0:
                values[f.name] = value
            elif float in kind and isinstance(value, (int, float)) and not isinstance(value, bool):
                values[f.name] = float(value)
            elif str in kind and isinstance(value, str):
                values[f.name] = value
            elif f.name == "tick_window" and _is_rows(value):
                values[f.name] = tuple(tuple(float(v) for v in row) for row in value)
            else:
                names = " or ".join(_TYPE_WORDS[k] for k in kind) or _TYPE_WORDS_ROWS
                p.expect(False, f"run state '{f.name}' must be {names}, got {value!r}")
        return cls(**values) if not p.items else None


_TYPE_WORDS = {int: "a non-negative integer", float: "a number", str: "a string", None: "null"}
_RUN_STATE_TYPES: dict[str, tuple[Any, ...]] = {
    "seed": (int,),
    "world_size": (int,),
    "phase_index": (int,),
    "held_images": (int,),
    "repeat": (int,),
    "kimg": (float, None),
    "data": (str, None),
    "run": (str, None),
    "elapsed_s": (float,),
    "tick_window": (),
    "augment_p": (float, None),
    "augment_signs": (float,),
    "augment_count": (float,),
    "augment_r": (float,),
    "augment_steps": (int,),
    "augment_adjusted": (int,),
}
_TYPE_WORDS_ROWS = "a list of rows of numbers"


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(row, list)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
        for row in value
    )


@dataclass(frozen=True, eq=False, repr=False)
class Checkpoint:
    """One checkpoint: the spec, the stage, the weights and (for resuming) the training state."""

    spec_text: str
    spec_path: str
    spec_hash: str
    stage: Stage
    images_shown: int
    G: StateDict
    G_ema: StateDict
    D: StateDict | None = None
    training: TrainingState | None = None
    run_state: RunState | None = None  # absent in weights-only files (e.g. imported networks)
    info: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where it was read from or last written to
    skipped: tuple[str, ...] = ()  # newer files of a run folder that failed to load, and why

    def __repr__(self) -> str:
        """One line, no tensors: what a notebook shows for a checkpoint."""
        spec = self.spec_path.rsplit("/", 1)[-1] or "<checkpoint>"
        what = "training state" if self.resumable else "weights only"
        nets = "G, D, G_ema" if self.D is not None else "G, G_ema"
        where = f"{str(self.path)!r}, " if self.path is not None else ""
        return (
            f"Checkpoint({where}spec {spec} ({self.spec_hash[:12]}), stage {self.stage}, "
            f"{self.images_shown:,} images, {nets}, {what})"
        )

    # -- making one ----------------------------------------------------------------------------

    @classmethod
    def from_weights(
        cls,
        loaded: LoadedSpec,
        stage: Stage,
        *,
        G: StateDict,
        D: StateDict | None = None,
        G_ema: StateDict | None = None,
        images_shown: int = 0,
        training: TrainingState | None = None,
        run_state: RunState | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> Checkpoint:
        """A checkpoint of networks compiled from `loaded` at `stage` (G EMA defaults to G).
        The spec is stored as standalone text, so the file needs nothing else to be used."""
        ckpt = cls(
            spec_text=loaded.standalone_text(),
            spec_path=str(loaded.path),
            spec_hash=loaded.hash,
            stage=stage,
            images_shown=int(images_shown),
            G=_cpu(G),
            G_ema=_cpu(G if G_ema is None else G_ema),
            D=None if D is None else _cpu(D),
            training=training,
            run_state=run_state,
            info=dict(info or {}),
        )
        ckpt.check_weights()
        return ckpt

    # -- the file ------------------------------------------------------------------------------

    def save(self, target: str | Path) -> Checkpoint:
        """Write atomically to `target` (a .pt file, or a folder: `checkpoint-<images>.pt` in it);
        returns the checkpoint with its new `path`."""
        target = Path(target)
        path = target / checkpoint_name(self.images_shown) if target.is_dir() else target
        payload = self._payload()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())

        write_atomic_with(path, write)
        fsync_dir(path.parent)  # the rename itself survives a power cut
        return replace(self, path=path, skipped=())

    @classmethod
    def load(
        cls,
        source: str | Path,
        *,
        map_location: str | torch.device = "cpu",
        stable: bool = False,
    ) -> Checkpoint:
        """Read a checkpoint file, or the newest intact checkpoint of a run folder (older ones are
        tried when newer ones are damaged; `skipped` says which and why). `stable=True`: the
        newest intact one taken at a stable stage, whose `generator()` needs no resolution (what
        progan-generate and progan-export use). `UserError` when nothing loadable is found."""
        files = checkpoint_files(source)
        skipped: list[str] = []
        for path in files:
            try:
                ckpt = cls.read(path, map_location=map_location)
            except UserError as err:
                if len(files) == 1:
                    raise
                skipped.append(str(err))
                continue
            if stable and ckpt.stage.phase != "stable" and len(files) > 1:
                skipped.append(f"{path}: taken during the fade-in {ckpt.stage}")
                continue
            return replace(ckpt, skipped=tuple(skipped))
        kind = "intact checkpoint at a stable stage" if stable else "intact checkpoint"
        raise UserError(f"{source}: no {kind}; " + "; ".join(skipped))

    @classmethod
    def read(cls, path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Read exactly this file: integrity, safe unpickling, structure, weights."""
        path = Path(path)
        raw = _read_archive(path, map_location)
        ckpt = _parse(raw, path)
        ckpt.check_weights()
        return ckpt

    def _payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "spec_text": self.spec_text,
            "spec_hash": self.spec_hash,
            "spec_path": self.spec_path,
            "stage": {"resolution": self.stage.resolution, "phase": self.stage.phase},
            "images_shown": self.images_shown,
            "G": self.G,
            "G_ema": self.G_ema,
            "scaler": None,
            "extra": self.run_state.to_dict() if self.run_state is not None else {},
            "info": dict(self.info),
        }
        if self.D is not None:
            payload["D"] = self.D
        if self.training is not None:
            t = self.training
            payload.update(opt_G=t.opt_G, opt_D=t.opt_D, rng=t.rng, loader=t.loader)
        return payload

    # -- back to networks ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else checkpoint_name(self.images_shown)

    @property
    def resumable(self) -> bool:
        """True when the file holds the complete training state (bit-for-bit resume)."""
        return self.training is not None and self.D is not None

    @cached_property
    def loaded(self) -> LoadedSpec:
        """The stored spec, validated (its hash is that of the stored text)."""
        from progan_dsl.spec import SpecError, load_spec_text

        try:
            return load_spec_text(self.spec_text, self.spec_path or "<checkpoint>")
        except SpecError as err:
            raise UserError(
                f"{self._where}: the spec stored in the checkpoint is invalid:\n{err}"
            ) from None

    def program(self, fused: bool | None = None) -> Program:
        """The stored spec compiled (`fused` as for `compile_spec`; parameter names do not depend
        on it, so the same weights load either way). Compiled once per `fused` value."""
        from progan_dsl.compiler import compile_spec

        if fused not in self._programs:
            self._programs[fused] = compile_spec(self.loaded, fused=fused)
        return self._programs[fused]

    @cached_property
    def _programs(self) -> dict[bool | None, Program]:
        return {}

    def stable_stage(self, resolution: int | None = None) -> Stage:
        """The stable stage whose generator this checkpoint can provide: its own stage when
        stable; with `resolution`, that resolution's stable stage if every parameter of it is
        here (names are stable across stages, so a checkpoint of the fade-in to 2R still holds
        the R generator); `UserError` otherwise."""
        program = self.program()
        if resolution is None:
            if self.stage.phase != "stable":
                low = program.stages[program.stages.index(self.stage) - 1].resolution
                raise UserError(
                    f"{self._where}: taken during the fade-in {self.stage}; neither stable end "
                    f"is what the network computed then: pick one ({low} or "
                    f"{self.stage.resolution}: --resolution on the command line, "
                    f"generator(resolution=...) in Python), or load a run folder with "
                    f"Checkpoint.load(run, stable=True)"
                )
            return self.stage
        stage = program.stage(resolution, "stable")
        wanted = self._module_state("G", stage)
        missing = [name for name in wanted if name not in self.G_ema]
        if missing:
            more = " ..." if len(missing) > 3 else ""
            raise UserError(
                f"{self._where}: stage {self.stage} lacks {', '.join(missing[:3])}{more} "
                f"of the {resolution} stable generator"
            )
        return stage

    def generator(
        self, *, ema: bool = True, resolution: int | None = None, fused: bool | None = None
    ) -> nn.Module:
        """A stable-stage generator with this checkpoint's weights, in eval mode without grads
        (the EMA copy unless `ema=False`; the stage as `stable_stage(resolution)` picks it)."""
        stage = self.stable_stage(resolution)
        G = self.program(fused).build("G", stage)
        weights = self.G_ema if ema else self.G
        G.load_state_dict({name: weights[name] for name in G.state_dict()})
        return G.eval().requires_grad_(False)

    def _module_state(self, net: str, stage: Stage) -> StateDict:
        """Names and shapes of the stage module's state (meta tensors), built once per module."""
        key = (net, stage)
        if key not in self._module_states:
            self._module_states[key] = _meta_state(self.program(), net, stage)
        return self._module_states[key]

    @cached_property
    def _module_states(self) -> dict[tuple[str, Stage], StateDict]:
        return {}

    def check_weights(self) -> None:
        """Weights must fit the modules of their stage: same names, same shapes (one message)."""
        program = self.program()
        if self.stage not in program.stages:
            valid = ", ".join(str(s) for s in program.stages)
            raise UserError(
                f"{self._where}: stage {self.stage} is not a stage of spec "
                f"'{program.spec.name}' ({valid})"
            )
        problems: list[str] = []
        for net, key, state in (("G", "G", self.G), ("G", "G_ema", self.G_ema), ("D", "D", self.D)):
            if state is None:
                continue
            wanted = self._module_state(net, self.stage)
            missing = sorted(set(wanted) - set(state))
            extra = sorted(set(state) - set(wanted))
            wrong = [
                f"{k} {list(state[k].shape)} (expected {list(wanted[k].shape)})"
                for k in wanted
                if k in state and tuple(state[k].shape) != tuple(wanted[k].shape)
            ]
            for label, names in (
                ("missing", missing),
                ("unexpected", extra),
                ("wrong shape", wrong),
            ):
                if names:
                    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                    problems.append(f"{key}: {label} {', '.join(names[:3])}{more}")
            bad = [k for k, v in state.items() if k in wanted and not v.is_floating_point()]
            if bad:
                problems.append(f"{key}: non-float tensors {', '.join(bad[:3])}")
        if problems:
            raise UserError(
                f"{self._where}: weights do not fit stage {self.stage} of spec "
                f"'{program.spec.name}': " + "; ".join(problems)
            )

    @property
    def _where(self) -> str:
        return str(self.path) if self.path is not None else "checkpoint"


# ---- reading and validating ------------------------------------------------------------------


def _read_archive(path: Path, map_location: str | torch.device) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # CRC-32 of every member
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UserError(
            f"{path}: not a checkpoint or damaged (truncated or not a torch.save archive: {err})"
        ) from None
    if bad is not None:
        raise UserError(
            f"{path}: damaged checkpoint: member {bad} fails its CRC check (the file "
            f"was corrupted on disk or in transfer)"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file to the user
        first = (str(err).splitlines() or [""])[0][:200]
        raise UserError(
            f"{path}: not a loadable progan-dsl checkpoint ({type(err).__name__}: {first})"
        ) from None


class _Problems:
    """Collects structure problems of one file; raises them as one message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def expect(self, ok: bool, message: str) -> bool:
        if not ok:
            self.items.append(message)
        return ok

    def raise_if_any(self) -> None:
        if self.items:
            raise UserError(
                f"{self.path}: not a valid progan-dsl checkpoint: " + "; ".join(self.items)
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _state_dict(raw: Any, key: str, p: _Problems, *, required: bool) -> StateDict | None:
    value = raw.get(key)
    if value is None:
        p.expect(not required, f"{key} is missing")
        return None
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items()
    )
    p.expect(ok, f"{key} must map parameter names to tensors")
    return value if ok else None


def _parse(raw: Any, path: Path) -> Checkpoint:
    p = _Problems(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UserError(f"{path}: not a progan-dsl checkpoint")
    if raw.get("version") != VERSION:
        raise UserError(
            f"{path}: checkpoint version {raw.get('version')!r} is not supported "
            f"(supported: {VERSION})"
        )
    for key in ("spec_text", "spec_hash"):
        p.expect(isinstance(raw.get(key), str), f"{key} must be a string")
    spec_path = raw.get("spec_path", "<checkpoint>")
    p.expect(isinstance(spec_path, str), "spec_path must be a string")
    stage_raw = raw.get("stage")
    stage: Stage | None = None
    if p.expect(isinstance(stage_raw, dict), "stage must be {resolution, phase}"):
        res, phase = stage_raw.get("resolution"), stage_raw.get("phase")
        ok = p.expect(
            _is_int(res) and res > 0, f"stage.resolution must be a positive integer, got {res!r}"
        )
        ok &= p.expect(
            phase in PHASES, f"stage.phase must be one of {', '.join(PHASES)}, got {phase!r}"
        )
        if ok:
            stage = Stage(res, phase)
    shown = raw.get("images_shown")
    p.expect(
        _is_int(shown) and shown >= 0, f"images_shown must be a non-negative integer, got {shown!r}"
    )
    G = _state_dict(raw, "G", p, required=True)
    G_ema = _state_dict(raw, "G_ema", p, required=False)
    D = _state_dict(raw, "D", p, required=False)
    present = [k for k in TRAINING_KEYS if raw.get(k) is not None]
    training = None
    if present:
        for key in TRAINING_KEYS:
            p.expect(
                isinstance(raw.get(key), dict),
                f"{key} must be a dict (the training state is "
                f"{', '.join(TRAINING_KEYS)}, all or none)",
            )
        opt_ok = all(
            isinstance(raw.get(k), dict)
            and isinstance(raw[k].get("state"), dict)
            and isinstance(raw[k].get("param_groups"), list)
            for k in ("opt_G", "opt_D")
        )
        p.expect(opt_ok, "opt_G/opt_D must be optimizer state dicts")
        p.expect(D is not None, "D is missing (a checkpoint with training state holds D)")
    extra, info = raw.get("extra", {}), raw.get("info", {})
    run_state = None
    if p.expect(isinstance(extra, dict), "extra (the run state) must be a dict") and extra:
        run_state = RunState.from_dict(extra, p)
    p.expect(isinstance(info, dict), "info must be a dict")
    p.raise_if_any()
    assert stage is not None and G is not None
    if present:
        training = TrainingState(raw["opt_G"], raw["opt_D"], raw["rng"], raw["loader"])
    return Checkpoint(
        spec_text=raw["spec_text"],
        spec_path=spec_path,
        spec_hash=raw["spec_hash"],
        stage=stage,
        images_shown=int(shown),
        G=G,
        G_ema=G if G_ema is None else G_ema,
        D=D,
        training=training,
        run_state=run_state,
        info=info,
        path=path,
    )


def _meta_state(program: Program, net: str, stage: Stage) -> StateDict:
    """Names and shapes of a stage module's state, without allocating its weights."""
    with torch.device("meta"):
        return program.build(net, stage).state_dict()


def _cpu(state: Mapping[str, Tensor]) -> StateDict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


__all__ = [
    "FORMAT",
    "VERSION",
    "Checkpoint",
    "TrainingState",
    "checkpoint_files",
    "checkpoint_name",
    "list_checkpoints",
]
