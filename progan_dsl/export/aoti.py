"""AOTInductor export of a stable-stage generator: one `.pt2` package, compiled ahead of time for
one device, that runs from Python with torch alone (no progan_dsl):

    import torch
    G = torch._inductor.aoti_load_package("g.pt2")     # compiled model + weights
    images = G(torch.randn(16, 512))                   # [16, C, H, W] float32, nominal [-1, 1]
    images = G(z, labels)         # a class-conditional G: labels float32 one-hot [N, classes]
    G.get_metadata()["spec_name"], ...["latent_size"]  # the same provenance as an .onnx file

Owns `export_aoti` (the library call behind `progan-export --aoti`), `exported_program` (the
`torch.export` step alone, also what a quick benchmark runs without compiling) and
`read_aoti_metadata`.

How: `torch.export.export` of the EMA generator bound to its exported inputs by role
(`progan_dsl.export.bound.ExportedGenerator`: z, then labels for a class-conditional G, in the
order the metadata's `inputs` lists; a stable stage takes no alpha), batch dynamic
unless fixed (`Dim("batch", min=1)`; torch.export specialises sizes 0 and 1, so the example batch
is 2), then `torch._inductor.aoti_compile_and_package`, which generates and compiles C++ (CPU) or
Triton + C++ (CUDA) and packs the shared library and the weights into the zip archive. A package
is for the device and processor it was built for: a CPU package uses this CPU's vector
instructions (metadata `AOTI_CPU_ISA`), a CUDA one this GPU's architecture. Building needs a C++
compiler (g++ or clang++, or $CXX).

Metadata: `progan_dsl.generate.meta.GeneratorMeta` (spec name, hash and YAML, stage,
resolution, height, width, channels, latent size, num_classes, inputs, output range, precision,
batch, device, ...) plus the caller's notes (images trained, checkpoint), stored in the package
(`aot_inductor.metadata`) beside the compiler's own `AOTI_*` keys.

Precision: fp32, or a bf16 / fp16 copy behind float32 input and output (the casts are in the
graph, as in the ONNX export).

A package is compiled code: loading one runs it, like loading a shared library. Load only
packages from a trusted source (`progan_dsl.generate.aoti_package.load_aoti` refuses archives
whose member names would unpack outside their folder, but cannot make foreign code safe).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from progan_dsl.compiler import Program
from progan_dsl.errors import UserError
from progan_dsl.export.bound import ExportedGenerator, example_inputs
from progan_dsl.fsutil import write_atomic_with
from progan_dsl.generate.meta import GeneratorMeta
from progan_dsl.ir import Stage

SUFFIX = ".pt2"  # AOTInductor refuses package paths with any other suffix
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("cpu", "cuda")
EXPORT_BATCH = 2  # example batch of a dynamic export (torch.export specialises 0 and 1)
EXPORTER = "torch.export + AOTInductor"


def _check(stage: Stage, precision: str, device: str, batch: str | int, out: Path) -> None:
    if stage.phase != "stable":
        raise UserError(f"stage {stage} is a fade-in (it takes alpha); export a stable stage")
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device not in DEVICES:
        raise UserError(f"AOTInductor device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("an AOTInductor package for cuda is compiled on a CUDA GPU; none is here")
    if batch != "dynamic" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise UserError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give the {SUFFIX} file to write")
    if out.suffix != SUFFIX:
        raise UserError(f"{out}: an AOTInductor package must be named *{SUFFIX}")


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def exported_program(
    program: Program,
    stage: Stage,
    G: nn.Module,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    batch: str | int = "dynamic",
) -> Any:
    """`torch.export` of the stable generator `G` (a copy; `G` is not modified) on `device`:
    z [N, latent] float32 (and labels [N, classes] float32 for a class-conditional G) ->
    images [N, C, H, W] float32."""
    signature = program.signature("G", stage)
    module = ExportedGenerator(G, signature, PRECISIONS[precision]).to(device)
    fixed = None if batch == "dynamic" else int(batch)
    examples = example_inputs(
        signature,
        program.spec.architecture.latent_size,
        program.num_classes,
        fixed or EXPORT_BATCH,
        device,
    )
    rows = torch.export.Dim("batch", min=1)  # one batch size shared by every input
    dynamic = None if fixed else (tuple({0: rows} for _ in examples),)  # (*inputs)
    with torch.no_grad():
        return torch.export.export(module, examples, dynamic_shapes=dynamic, strict=False)


def export_aoti(
    program: Program,
    stage: Stage,
    G: nn.Module,
    out_path: str | Path,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    batch: str | int = "dynamic",
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Export and compile the stable-stage generator `G` into the package `out_path` (*.pt2),
    written atomically (a temporary sibling renamed into place); return the path."""
    out = Path(out_path)
    _check(stage, precision, device, batch, out)
    if _compiler() is None:
        raise UserError(
            "AOTInductor compiles C++: no compiler found (install g++ or clang++, or set CXX)"
        )
    ep = exported_program(program, stage, G, precision=precision, device=device, batch=batch)
    props = GeneratorMeta.of_program(
        program,
        stage,
        precision=precision,
        batch=batch,
        exporter=f"{EXPORTER} (torch {torch.__version__.split('+')[0]})",
        device=device,
        extra=metadata,
    ).to_props()

    def write(tmp: Path) -> None:
        torch._inductor.aoti_compile_and_package(
            ep, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": props}
        )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())

    return write_atomic_with(out, write)


def read_aoti_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a package (ours and the compiler's `AOTI_*` keys). Loads the package:
    it must have been built for this machine's device (`progan_dsl.generate.aoti_package`)."""
    from progan_dsl.generate.aoti_package import load_aoti

    return load_aoti(path)[1]


__all__ = ["DEVICES", "PRECISIONS", "export_aoti", "exported_program", "read_aoti_metadata"]
