"""`progan-export --source DIR`: the generator as plain PyTorch code plus safetensors weights.

Owns the layout of that folder, for users who would rather ship torch than ONNX:

    DIR/
      progan_<spec>/          the generated package (`progan-compile --emit-source`): every stage's
                              G and D module and `layers.py`; imports with nothing but torch
      G_ema.safetensors       the exported stage's generator weights (state-dict names)
      spec.yaml               the spec the run was compiled from
      generate.py             `python generate.py --num 16 --seed 0 --out grid.png`
                              (`--class K` too for a class-conditional generator)

The code comes from the one codegen path (`progan_dsl.codegen`: `emit_package`, and the
`generate.py.j2` template), so it is the same module that was trained and exported to ONNX.
`generate.py` uses the project's latent recipe and uint8 conversion, so it draws the same images
as `progan-generate` for a seed (and class). It calls G with keyword arguments named by the
network's signature (`z`, and `labels` one-hot float32 [N, classes] when conditional), so the
call binds by name, never by position. The folder is built beside DIR and published whole; a
non-empty DIR is replaced only with `force` and only when it holds an earlier --source export and
nothing else (`fsutil.plan_output_dir`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import save
from torch import nn

from progan_dsl.codegen import class_name, emit_package
from progan_dsl.codegen.render import render_template
from progan_dsl.compiler import Program
from progan_dsl.fsutil import plan_output_dir, staged_dir, translate_write_errors
from progan_dsl.generate.meta import exported_ports
from progan_dsl.images import GUTTER, GUTTER_VALUE
from progan_dsl.ir import Stage
from progan_dsl.ir.types import PortRole, Signature

WEIGHTS_FILE = "G_ema.safetensors"
OUTPUT_KIND = "progan-export --source"
PARTIAL_REMOVED = "the partial folder was removed"


def _write_file(tmp: Path, final: Path, data: bytes) -> None:
    """`data` into the staged file `tmp`; a write error names `final`, the file the user asked
    for, not the staging name."""
    try:
        tmp.write_bytes(data)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(final)) from err


# What generate.py passes for each input of G, by role (the names it defines for them).
SCRIPT_VALUES = {PortRole.LATENT: "torch.from_numpy(z)", PortRole.LABELS: "labels"}


def call_arguments(signature: Signature) -> str:
    """generate.py's arguments of G by name: `z=torch.from_numpy(z), labels=labels`."""
    return ", ".join(f"{p.name}={SCRIPT_VALUES[p.role]}" for p in exported_ports(signature))


def package_name(program: Program) -> str:
    """`progan_<spec name>`: a valid module name (spec names are validated identifiers)."""
    return f"progan_{program.spec.name}"


def write_torch_source(
    program: Program,
    stage: Stage,
    G: nn.Module,
    folder: str | Path,
    *,
    metadata: Mapping[str, object] | None = None,
    force: bool = False,
) -> Path:
    """Write the folder described in the module docstring for stable stage `stage`; return it."""
    plan = plan_output_dir(folder, kind=OUTPUT_KIND, force=force)
    package = package_name(program)
    with translate_write_errors(plan.path, PARTIAL_REMOVED), staged_dir(plan) as tmp:
        emit_package(program.graphs, tmp / package)
        weights = {name: t.detach().to("cpu").contiguous() for name, t in G.state_dict().items()}
        info = {
            "spec_name": program.spec.name,
            "spec_hash": program.loaded.hash,
            "stage": str(stage),
            "class": class_name("G", stage),
            "package": package,
            "num_classes": str(program.num_classes),
        }
        info.update({key: str(value) for key, value in (metadata or {}).items()})
        # serialised here and written by Python, so a full disk is an OSError naming the file
        _write_file(tmp / WEIGHTS_FILE, plan.path / WEIGHTS_FILE, save(weights, metadata=info))
        spec_text = program.loaded.standalone_text().encode()
        _write_file(tmp / "spec.yaml", plan.path / "spec.yaml", spec_text)
        script = render_template(
            "generate.py.j2",
            spec_name=program.spec.name,
            stage=str(stage),
            package=package,
            class_name=class_name("G", stage),
            latent_size=program.spec.architecture.latent_size,
            num_classes=program.num_classes,
            call_args=call_arguments(program.signature("G", stage)),
            weights=WEIGHTS_FILE,
            gutter=GUTTER,
            gutter_value=GUTTER_VALUE,
        )
        _write_file(tmp / "generate.py", plan.path / "generate.py", script.encode())
    return plan.path
