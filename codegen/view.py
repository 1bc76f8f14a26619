"""The view model of one generated module: every name, literal and line decided here.

Only validated identifiers and plain literals (ints, floats, bools, layer-kind strings) reach the
source: `literal()` refuses anything else, so a spec can never inject code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from progan_dsl.ir import BlockGraph, EdgeKind, Node, Role, Stage, param_count
from progan_dsl.ir.describe import describe
from progan_dsl.ir.types import NET_NAME, PortRole
from progan_dsl.kinds import get_kind

RUNTIME_MODULE = "progan_dsl.nn.layers"
RUNTIME_ALIAS = "L"
POSITIONAL = ("in_channels", "out_channels", "in_features", "out_features", "out_shape")


@dataclass(frozen=True)
class LayerLine:
    attr: str
    ctor: str
    comment: str


@dataclass(frozen=True)
class StepLine:
    code: str
    comment: str


@dataclass(frozen=True)
class ModuleView:
    header: list[str]
    imports: list[str]
    class_name: str
    docstring: list[str]  # lines
    params: list[str]  # the forward arguments after self, annotated, in signature order
    returns: str  # the forward's return annotation
    layers: list[LayerLine]
    steps: list[StepLine]
    result: str  # the returned expression


def class_name(net: str, stage: Stage) -> str:
    return f"{NET_NAME[net]}{stage.resolution}{stage.phase.capitalize()}"


def literal(value: Any) -> str:
    """Python source for a plain value; refuses anything that is not a plain literal."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == math.sqrt(2.0):
            return f"{RUNTIME_ALIAS}.SQRT2"
        if not math.isfinite(value):
            raise ValueError(f"non-finite literal {value!r}")
        return repr(value)
    if isinstance(value, str):
        if not value.replace("_", "").isalnum() or not value.isascii():
            raise ValueError(f"refusing to put string {value!r} into generated code")
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"refusing to put {type(value).__name__} into generated code")


def _identifier(name: str) -> str:
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"refusing non-identifier {name!r} in generated code")
    return name


def shape_comment(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(["N", *map(str, shape)]) + "]"


def _module_alias(module: str) -> str:
    return RUNTIME_ALIAS if module == RUNTIME_MODULE else module.replace(".", "_")


def _imports(graph: BlockGraph, runtime_import: str) -> list[str]:
    modules = sorted({get_kind(n.kind).runtime_module for n in graph.nodes() if _is_layer(n)})
    lines = ["import torch", "from torch import Tensor, nn", "", runtime_import]
    for module in modules:
        if module != RUNTIME_MODULE:
            lines.append(f"import {module} as {_module_alias(module)}")
    return lines


def _is_layer(node: Node) -> bool:
    return node.kind not in ("input", "lerp")


ROLE_DOC = {
    PortRole.LATENT: "latent vectors",
    PortRole.LABELS: "one-hot class labels",
    PortRole.IMAGE: "images in [-1, 1]",
    PortRole.SCORES: "realness scores",
    PortRole.CLASS_LOGITS: "class logits",
}


def _signature_doc(graph: BlockGraph, fade: bool) -> list[str]:
    """The docstring lines that state the calling convention the module has."""
    sig = graph.signature
    lines = ["Inputs:"]
    for port in sig.inputs:
        if port.role == PortRole.ALPHA:
            use = (
                "fade-in weight of the new block, a 0-dim tensor in [0, 1]"
                if fade
                else "accepted and unused at a stable stage (every stage is called alike)"
            )
            lines.append(f"    {port.name}: {use}.")
        else:
            shape = shape_comment(graph.port_shape(port))
            lines.append(f"    {port.name}: {ROLE_DOC[port.role]}, {shape}.")
    lines.append("Returns:" if len(sig.outputs) == 1 else "Returns, as a tuple:")
    for port in sig.outputs:
        shape = shape_comment(graph.port_shape(port))
        lines.append(f"    {port.name}: {ROLE_DOC[port.role]}, {shape}.")
    return lines


def call_text(graph: BlockGraph) -> str:
    """`D(img, alpha) -> (scores, class_logits)`: a network's calling convention in words."""
    sig = graph.signature
    outs = ", ".join(p.name for p in sig.outputs)
    outs = outs if len(sig.outputs) == 1 else f"({outs})"
    return f"{graph.net}({', '.join(p.name for p in sig.inputs)}) -> {outs}"


def _result(var: str, take: tuple[int, int] | None) -> str:
    return var if take is None else f"{var}[:, {take[0]}:{take[1]}]"


def _ctor(node: Node) -> str:
    kind = get_kind(node.kind)
    args = kind.ctor(node.facts())
    parts = [literal(args[k]) for k in POSITIONAL if k in args]
    parts += [f"{_identifier(k)}={literal(v)}" for k, v in args.items() if k not in POSITIONAL]
    alias = _module_alias(kind.runtime_module)
    return f"{alias}.{_identifier(kind.runtime_class)}({', '.join(parts)})"


def _skip_branch(graph: BlockGraph) -> set[str]:
    """Nodes that feed the fade-in lerp only through its skip input."""
    for node in graph.nodes():
        if node.kind == "lerp":
            preds = dict((k, p) for p, k in graph.preds(node.id))
            skip, new = preds[EdgeKind.FADE_SKIP], preds[EdgeKind.FADE_NEW]
            on_skip = graph.ancestors(skip.id) | {skip.id}
            on_new = graph.ancestors(new.id) | {new.id}
            return {n for n in on_skip - on_new if graph.node(n).role != Role.INPUT}
    return set()


def module_view(
    graph: BlockGraph,
    stage: Stage,
    *,
    spec_name: str,
    spec_hash: str,
    fused: bool,
    runtime_import: str = f"import {RUNTIME_MODULE} as {RUNTIME_ALIAS}",
) -> ModuleView:
    net = graph.net
    skip = _skip_branch(graph)
    var: dict[str, str] = {}
    holds: dict[str, str] = {}  # variable -> node whose output it currently holds
    layers: list[LayerLine] = []
    steps: list[StepLine] = []
    sig = graph.signature
    fade = stage.phase == "fade"
    params = []
    for port in sig.inputs:
        name = _identifier(port.name)
        if port.node is not None:
            var[port.node] = name
            holds[name] = port.node
            params.append(f"{name}: Tensor")
        else:  # alpha: required where the stage fades, optional where it is stable
            params.append(f"{name}: Tensor" if fade else f"{name}: Tensor | None = None")
    for node in graph.nodes():
        if node.kind == "input":
            continue
        preds = graph.preds(node.id)
        for p, _ in preds:  # liveness check: every input is still in its variable
            if holds.get(var[p.id]) != p.id:
                raise AssertionError(
                    f"codegen: {var[p.id]} was overwritten before {node.id} read it"
                )
        out = "skip" if node.id in skip else "x"
        shape = shape_comment(node.out_shape or ())
        if node.kind == "lerp":
            by_kind = {k: var[p.id] for p, k in preds}
            old, new = by_kind[EdgeKind.FADE_SKIP], by_kind[EdgeKind.FADE_NEW]
            code = f"{out} = torch.lerp({old}, {new}, alpha.to({new}.dtype))"
            steps.append(StepLine(code, f"{shape} fade-in: (1 - alpha) * {old} + alpha * {new}"))
        else:
            attr = _identifier(node.attr)
            desc = describe(node)
            act = f", {desc.activation}" if desc.activation is not None else ""
            norm = ", pixel norm" if desc.normalize else ""
            layers.append(LayerLine(attr, _ctor(node), f"{node.id}: {desc.label}{act}{norm}"))
            args = ", ".join(var[p.id] for p, _ in preds)
            steps.append(StepLine(f"{out} = self.{attr}({args})", shape))
        var[node.id] = out
        holds[out] = node.id
    for port in sig.outputs:  # liveness of the results
        assert port.node is not None and holds.get(var[port.node]) == port.node, port
    results = [_result(var[p.node], p.take) for p in sig.outputs if p.node is not None]
    count = param_count(graph)
    title = f"{NET_NAME[net]}, stage {stage.resolution} {stage.phase}"
    return ModuleView(
        header=[
            f"Generated by progan-dsl from spec '{_identifier(spec_name)}' "
            f"(sha256 {spec_hash[:16]}).",
            f"{title}: {count:,} trainable parameters; fused_scale={'on' if fused else 'off'}.",
            "Do not edit: regenerate with `progan-compile SPEC --emit-source DIR`.",
        ],
        imports=_imports(graph, runtime_import),
        class_name=class_name(net, stage),
        docstring=[f"{title} ({count:,} parameters).", "", *_signature_doc(graph, fade)],
        params=params,
        returns="Tensor" if len(results) == 1 else f"tuple[{', '.join(['Tensor'] * len(results))}]",
        layers=layers,
        steps=steps,
        result=", ".join(results),
    )
