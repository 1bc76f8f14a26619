"""ONNX export of a stable-stage generator: one self-contained, checked, deterministic .onnx file.

Owns `export_onnx` (the library call behind `progan-export`, also for training and benchmarks)
and `parameter_elements` (how the parameter count of an
exported file is measured).

Exporter choice: `torch.onnx.export(..., dynamo=True)`. The TorchScript exporter (`dynamo=False`)
cannot export the fused up-convolution at all (its 4x4 transposed-conv kernel is computed from the
3x3 weight at run time, and the TorchScript path refuses "convolution for kernel of unknown
shape"), and it is deprecated. The dynamo exporter handles both fused and plain programs and
gives byte-identical files for the same module.

Parameters stay parameters: the equalized learning rate keeps weights N(0, 1) and multiplies by
gain / sqrt(fan_in) at run time (Section 4.1). The exporter's own optimiser would fold
`weight * scale` (and the fused 4x4 kernels) into new, renamed constants, so it is switched off
(`optimize=False`) and our constant folding skips every node that reads a parameter. The file's
initializers are then exactly G's state dict (same names, same N(0, 1) values) plus a few scalar
constants; onnxruntime and TensorRT fold the scaling once when they load the file.

Inputs: those of G's signature other than alpha, by their names (`z`; `z, labels` for a
class-conditional G, labels float32 one-hot [N, classes]), bound to G by role
(`progan_dsl.export.bound.ExportedGenerator`); the metadata lists them (`inputs`,
`num_classes`).

Precision: fp32 exports the module as it is. fp16 exports a half-precision copy behind float32
I/O: the graph casts its inputs to float16 on entry and the images back to float32 on exit, so
callers never change their dtype. (onnxruntime's CPU provider has no float16 kernels for most of
these ops and inserts casts back to float32, so fp16 only pays off on a GPU.)
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

import progan_dsl
from progan_dsl.compiler import Program
from progan_dsl.errors import UserError
from progan_dsl.export.bound import PARAMETER_PREFIX, ExportedGenerator, example_inputs
from progan_dsl.fsutil import write_bytes_atomic
from progan_dsl.generate.meta import OUTPUT_NAME, GeneratorMeta
from progan_dsl.ir import Stage

OPSET = 18  # opset of the exported graph; onnxruntime >= 1.14 and TensorRT 8.6+ run it
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
PROTOBUF_LIMIT = 2**31 - 1  # one .onnx file without external data must stay below 2 GiB
_EXPORT_BATCH = 2  # example batch for a dynamic export (torch.export specialises sizes 0 and 1)


def export_metadata(
    program: Program,
    stage: Stage,
    *,
    precision: str,
    batch: str | int,
    extra: Mapping[str, object] | None = None,
) -> GeneratorMeta:
    """The metadata an exported ONNX generator carries (`GeneratorMeta`, written as strings)."""
    exporter = f"torch.onnx dynamo=True (torch {torch.__version__.split('+')[0]}), opset {OPSET}"
    return GeneratorMeta.of_program(
        program, stage, precision=precision, batch=batch, exporter=exporter, extra=extra
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter that says nothing about our model (torchvision op
    registrations it skips, a pytree FutureWarning, the note that inputs share the batch
    axis), restoring everything afterwards."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # z and labels share the batch axis: the exporter says it keeps one name for both
            warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
            yield
    finally:
        registration.setLevel(level)


def _check_batch(batch: str | int) -> int | None:
    if batch == "dynamic":
        return None
    if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1:
        return batch
    raise UserError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")


def _export_proto(
    module: ExportedGenerator,
    examples: tuple[Tensor, ...],
    input_names: list[str],
    fixed_batch: int | None,
    parameter_names: set[str],
) -> onnx.ModelProto:
    from onnxscript import optimizer

    batch = torch.export.Dim("batch", min=1)  # one batch size shared by every input
    dynamic = None if fixed_batch else (tuple({0: batch} for _ in examples),)  # (*inputs)
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            examples,
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            optimize=False,
            verbose=False,
        )
    assert program is not None
    model = program.model
    for value in list(model.graph.initializers.values()):  # "g.b4_dense.weight" -> G's own name
        if value.name and value.name.startswith(PARAMETER_PREFIX):
            value.name = value.name[len(PARAMETER_PREFIX) :]

    def keep_parameter_reads(node: Any) -> bool | None:  # node: an onnx_ir.Node
        # False: never fold a node reading a parameter (it would bake the scale into a new
        # constant); None: the optimiser's usual rules for everything else (shape arithmetic).
        reads = any(
            v is not None and v.is_initializer() and v.name in parameter_names for v in node.inputs
        )
        return False if reads else None

    optimizer.fold_constants(model, should_fold=keep_parameter_reads)
    optimizer.remove_unused_nodes(model)
    return program.model_proto  # serialised from the edited `program.model`


def _check_module_is_stage(program: Program, stage: Stage, G: nn.Module) -> None:
    """The metadata names `stage`: the module must be that stage's generator (same parameter
    names and shapes), not another stage's."""
    with torch.device("meta"):
        wanted = {k: tuple(v.shape) for k, v in program.build("G", stage).state_dict().items()}
    have = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    if have != wanted:
        missing = sorted(set(wanted) - set(have))[:3]
        extra = sorted(set(have) - set(wanted))[:3]
        raise UserError(
            f"the module is not the {stage} generator of spec '{program.spec.name}' "
            f"(missing {missing or 'nothing'}, unexpected {extra or 'nothing'}); "
            f"export the module of the stage the metadata names"
        )


def export_onnx(
    program: Program,
    stage: Stage,
    G: nn.Module,
    out_path: str | Path,
    *,
    precision: str = "fp32",
    batch: str | int = "dynamic",
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Export the stable-stage generator `G` of `program` to `out_path`; return the path.

    Input `z` float32 [N, latent_size] (and `labels` float32 one-hot [N, classes] for a
    class-conditional G), output `images` float32 [N, C, H, W] in nominal range [-1, 1]; N is
    dynamic unless `batch` is an int. `metadata` adds notes to the
    metadata_props of `export_metadata`; callers put `images_trained` and the checkpoint there.
    `G` itself is not modified. The file passes `onnx.checker.check_model(full_check=True)` and
    is written atomically (temporary file, fsync, rename)."""
    if stage.phase != "stable":
        raise UserError(f"stage {stage} is a fade-in (it takes alpha); export a stable stage")
    _check_module_is_stage(program, stage, G)
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    fixed_batch = _check_batch(batch)
    out = Path(out_path)
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give the .onnx file to write")

    signature = program.signature("G", stage)
    module = ExportedGenerator(G, signature, PRECISIONS[precision]).to("cpu")
    meta = export_metadata(program, stage, precision=precision, batch=batch, extra=metadata)
    examples = example_inputs(
        signature,
        program.spec.architecture.latent_size,
        program.num_classes,
        fixed_batch or _EXPORT_BATCH,
    )
    parameter_names = set(G.state_dict())
    proto = _export_proto(module, examples, list(meta.inputs), fixed_batch, parameter_names)

    props = meta.to_props()
    proto.producer_name = "progan-dsl"
    proto.producer_version = progan_dsl.__version__
    proto.doc_string = (
        f"ProGAN generator '{program.spec.name}' at {stage} ({precision}): "
        f"{', '.join(meta.inputs)} -> {OUTPUT_NAME}. See metadata_props."
    )
    del proto.metadata_props[:]
    for key in sorted(props):
        proto.metadata_props.add(key=key, value=props[key])

    data = proto.SerializeToString()
    if len(data) >= PROTOBUF_LIMIT:
        raise UserError(
            f"the exported graph is {len(data) / 2**30:.1f} GiB, over protobuf's 2 GiB "
            "limit for one file"
        )
    onnx.checker.check_model(proto, full_check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, data)
    return out


def parameter_elements(model: onnx.ModelProto, parameter_names: Iterable[str]) -> int:
    """Elements of the initializers named after generator parameters (`b64_conv1.weight`, ...).

    This is how an exported file's parameter count is measured: because the export keeps every
    parameter as its own unscaled initializer, the sum over G's state-dict names equals
    `Program.params('G', stage)`. Raises `ValueError` if a parameter has no initializer."""
    names = set(parameter_names)
    found = {
        init.name: int(np.prod(init.dims, dtype=np.int64))
        for init in model.graph.initializer
        if init.name in names
    }
    missing = sorted(names - set(found))
    if missing:
        raise ValueError(f"parameters without an initializer: {', '.join(missing[:5])}")
    return sum(found.values())


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The metadata_props of an ONNX model as a dict."""
    return {prop.key: prop.value for prop in model.metadata_props}
