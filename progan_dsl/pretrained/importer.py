"""The import itself: official pickle -> spec + checkpoint, every step checked, nothing
half-written.

Steps, in order: read the pickle with the restricted unpickler (`unpickle`); read the networks'
static arguments and their stage (`official`); check every variable's name and shape against
the official table (`weights`); write the spec text and compile it; check that the compiled
networks have exactly the pickle's parameters (names and shapes over all stages, so the counts
agree element for element); convert the weights of the networks' stage; write
`DIR/spec.yaml` and `DIR/checkpoint-000000000.pt`.

A new folder is built beside DIR under a temporary name and renamed into place, so DIR appears
complete or not at all; with `force` into a non-empty DIR, the checkpoint and then the spec are
each replaced atomically and other files are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from progan_dsl.compiler import Program, compile_spec
from progan_dsl.errors import UserError
from progan_dsl.fsutil import fsync_dir, write_text_atomic
from progan_dsl.ir import Stage
from progan_dsl.pretrained.official import (
    OfficialNetworks,
    official_networks,
    rule_expressible,
    spec_name,
    spec_text,
)
from progan_dsl.pretrained.unpickle import NetworkState, OfficialPickle, read_official_pickle
from progan_dsl.pretrained.weights import (
    Variable,
    check_parameter_count,
    check_variables,
    discriminator_variables,
    generator_variables,
    parameter_shapes,
    state_dict,
    total_size,
)
from progan_dsl.spec import LoadedSpec, SpecError, load_spec_text

SPEC_FILE = "spec.yaml"
CHECKPOINT_FILE = "checkpoint-000000000.pt"  # images_shown = 0: the imported run starts here
NETS = ("G", "D")
SPEC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # the spec language's Identifier


@dataclass(frozen=True)
class Counts:
    """Trainable elements of one network: in the pickle, over all compiled stages, in the stage."""

    pickle: int  # sum of the pickle's trainable variable sizes (`lod` excluded)
    compiled: int  # parameters of the compiled spec over all its stages (== pickle)
    stage: int  # parameters of the imported stage's module

    @property
    def growing_only(self) -> int:
        """toRGB / fromRGB layers of other resolutions: used only while growing, not stored."""
        return self.pickle - self.stage


@dataclass(frozen=True, eq=False)
class ImportedNetworks:
    """A converted pickle, ready to be written."""

    pickle: OfficialPickle
    nets: OfficialNetworks
    loaded: LoadedSpec
    program: Program
    stage: Stage
    G: dict[str, Tensor]
    D: dict[str, Tensor]
    G_ema: dict[str, Tensor]
    counts: Mapping[str, Counts]  # "G", "D"

    @property
    def spec_text(self) -> str:
        return self.loaded.standalone_text()

    def info(self) -> dict[str, Any]:
        """Provenance stored in the checkpoint (plain values only)."""
        from progan_dsl import __version__

        pkl = self.pickle
        return {
            "imported_from": pkl.path.name,
            "imported_sha256": pkl.sha256,
            "importer": f"progan-import (progan-dsl {__version__})",
            "official_code": "tkarras/progressive_growing_of_gans (tfutil.Network pickle)",
            "official_names": {net.role: net.name for net in pkl.networks},
            "official_build_funcs": {net.role: net.build_func_name for net in pkl.networks},
            "official_static_kwargs": {
                net.role: {k: _plain(v) for k, v in net.static_kwargs.items()}
                for net in pkl.networks
            },
            "official_build_module_src_sha256": {
                net.role: net.build_module_src_sha256 for net in pkl.networks
            },
            "official_lod": self.nets.lod,
            "official_dtype": self.nets.G.dtype,
            "pickle_protocol": pkl.protocol,
            "G_ema": "the pickle's Gs",
        }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _meta_state(program: Program, net: str, stage: Stage) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in program.build(net, stage).state_dict().items()}


def _compiled_shapes(program: Program, net: str) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a network over every stage (stable stages hold them all)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for stage in program.stages:
        if stage.phase == "stable":
            shapes.update(_meta_state(program, net, stage))
    return shapes


def _check_compiled(program: Program, net: str, table: list[Variable], file: str) -> int:
    """The compiled spec must have exactly the official parameters; returns the element count."""
    compiled = _compiled_shapes(program, net)
    official = parameter_shapes(table)
    if compiled != official:
        only_spec = sorted(set(compiled) - set(official))
        only_pkl = sorted(set(official) - set(compiled))
        shapes = [
            f"{k} {compiled[k]} vs {official[k]}"
            for k in compiled
            if k in official and compiled[k] != official[k]
        ]
        raise RuntimeError(
            f"progan-import bug: the spec written for {file} does not compile to "
            f"the official {net}: only in the spec {only_spec[:4]}, only in the "
            f"pickle {only_pkl[:4]}, shapes {shapes[:4]}"
        )
    return sum(int(np.prod(s, dtype=np.int64)) for s in compiled.values())


def _load(text: str, spec_path: str, file: str) -> LoadedSpec:
    try:
        return load_spec_text(text, spec_path)
    except SpecError as err:
        raise UserError(
            f"{file}: these networks cannot be written in the spec language:\n{err}"
        ) from None


def _write_spec(
    nets: OfficialNetworks, pkl: OfficialPickle, name: str, spec_path: str
) -> LoadedSpec:
    """The spec text, with the channel rule when it reproduces nf() exactly, else a table."""
    args = {"name": name, "source": pkl.path.name, "sha256": pkl.sha256}
    table = not rule_expressible(nets)
    loaded = _load(spec_text(nets, table=table, **args), spec_path, str(pkl.path))
    arch = loaded.spec.architecture
    if not table and any(arch.channels_at(r) != nets.channels(r) for r in nets.resolutions):
        loaded = _load(spec_text(nets, table=True, **args), spec_path, str(pkl.path))
    return loaded


def check_name(name: str) -> str:
    if not SPEC_NAME.fullmatch(name):
        raise UserError(
            f"--name {name!r}: a spec name is an identifier (a letter, then up to 63 "
            "letters, digits or underscores)"
        )
    return name


def convert_pickle(
    path: str | Path, *, name: str | None = None, spec_path: str = SPEC_FILE
) -> ImportedNetworks:
    """Read and convert an official pickle (nothing written). `UserError` for anything the user
    can act on: a refused or damaged file, arguments the spec language cannot express, variables
    that are not the official ones."""
    if name is not None:
        check_name(name)
    pkl = read_official_pickle(path)
    file = str(pkl.path)
    nets = official_networks(pkl)
    tables = {"G": generator_variables(nets), "D": discriminator_variables(nets)}
    check_parameter_count(tables, file)  # before any network or tensor is built
    for state, net in ((pkl.G, "G"), (pkl.D, "D"), (pkl.Gs, "G")):
        check_variables(state, tables[net], file)
    loaded = _write_spec(nets, pkl, name or spec_name(pkl.path.stem), spec_path)
    program = compile_spec(loaded)
    stage = program.stage(nets.stage_resolution, "stable")
    counts: dict[str, Counts] = {}
    states: dict[str, dict[str, Tensor]] = {}
    sources: dict[str, tuple[str, NetworkState]] = {
        "G": ("G", pkl.G),
        "D": ("D", pkl.D),
        "G_ema": ("G", pkl.Gs),
    }
    for key, (net, state) in sources.items():
        names = _meta_state(program, net, stage)
        states[key] = state_dict(state, tables[net], names)
    for net in NETS:
        compiled = _check_compiled(program, net, tables[net], file)
        counts[net] = Counts(
            pickle=total_size(tables[net]), compiled=compiled, stage=program.params(net, stage)
        )
    return ImportedNetworks(
        pickle=pkl,
        nets=nets,
        loaded=loaded,
        program=program,
        stage=stage,
        G=states["G"],
        D=states["D"],
        G_ema=states["G_ema"],
        counts=counts,
    )


# ---- writing ---------------------------------------------------------------------------------


def check_target(out: str | Path, *, force: bool) -> Path:
    """Refuse a DIR that is a file, or a non-empty DIR without `force` (before any work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give a new or empty folder for --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(
            f"{out}: folder is not empty; give a new or empty folder, or --force to "
            f"replace {SPEC_FILE} and {CHECKPOINT_FILE} in it"
        )
    return out


@dataclass(frozen=True)
class Written:
    spec: Path
    checkpoint: Path
    shadowed_by: tuple[Path, ...]  # newer checkpoint files in DIR that a run-folder lookup prefers


def _save(imported: ImportedNetworks, folder: Path) -> Path:
    from progan_dsl.checkpoint import Checkpoint  # the one checkpoint writer

    ckpt = Checkpoint.from_weights(
        imported.loaded,
        imported.stage,
        G=imported.G,
        D=imported.D,
        G_ema=imported.G_ema,
        images_shown=0,
        info=imported.info(),
    )
    path = folder / CHECKPOINT_FILE
    ckpt.save(path)
    return path


def write_import(imported: ImportedNetworks, out: str | Path, *, force: bool = False) -> Written:
    """Write DIR/spec.yaml and DIR/checkpoint-000000000.pt (rules in the module docstring)."""
    out = check_target(out, force=force)
    if out.is_dir() and any(out.iterdir()):
        ckpt = _save(imported, out)  # checkpoint first: it carries the spec text itself
        spec = write_text_atomic(out / SPEC_FILE, imported.spec_text)
        from progan_dsl.checkpoint import list_checkpoints

        newer = tuple(p for p in list_checkpoints(out) if p.name != CHECKPOINT_FILE)
        return Written(spec=spec, checkpoint=ckpt, shadowed_by=newer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.import-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _save(imported, tmp)
        write_text_atomic(tmp / SPEC_FILE, imported.spec_text)
        try:
            os.rename(tmp, out)  # onto a missing or empty folder: atomic
        except OSError as err:
            raise UserError(
                f"{out}: could not move the import into place ({err.strerror}); was "
                "the folder filled meanwhile?"
            ) from None
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Written(spec=out / SPEC_FILE, checkpoint=out / CHECKPOINT_FILE, shadowed_by=())


def import_pickle(
    path: str | Path, out: str | Path, *, name: str | None = None, force: bool = False
) -> tuple[ImportedNetworks, Written]:
    """`progan-import`: convert `path` and write it into `out`."""
    out = check_target(out, force=force)
    imported = convert_pickle(path, name=name, spec_path=str(out / SPEC_FILE))
    return imported, write_import(imported, out, force=force)


__all__ = [
    "CHECKPOINT_FILE",
    "SPEC_FILE",
    "Counts",
    "ImportedNetworks",
    "Written",
    "check_target",
    "convert_pickle",
    "import_pickle",
    "write_import",
]
