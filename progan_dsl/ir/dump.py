"""Deterministic text dump of block graphs (`progan-compile SPEC --dump`; golden files)."""

from __future__ import annotations

from progan_dsl.ir.describe import describe
from progan_dsl.ir.graph import BlockGraph
from progan_dsl.ir.pipeline import CompiledGraphs, param_count
from progan_dsl.ir.types import EdgeKind, Node, Port, Stage


def _shape(shape: tuple[int, ...] | None) -> str:
    return "[" + ", ".join(map(str, shape or ())) + "]"


def _node_line(graph: BlockGraph, node: Node) -> str:
    desc = describe(node)
    inputs = []
    for pred, edge in graph.preds(node.id):
        inputs.append(pred.id if edge == EdgeKind.DATA else f"{edge.value}={pred.id}")
    attrs = []
    if desc.activation is not None:  # the runtime argument, "linear" included
        attrs.append(desc.activation)
    if desc.normalize:
        attrs.append("pixelnorm")
    if desc.gain is not None:
        attrs.append(f"gain={desc.gain:.6g}")
    params = desc.params
    head = f"  {node.id:<20} = {node.kind}({', '.join(inputs)})"
    tail = f"-> {_shape(node.out_shape)}"
    extra = f"  {' '.join(attrs)}" if attrs else ""
    count = f"  params={params:,}" if params else ""
    return f"{head:<56} {tail}{extra}{count}"


def _port(graph: BlockGraph, port: Port) -> str:
    if port.node is None:
        return port.name
    take = f" = {port.node}[{port.take[0]}:{port.take[1]}]" if port.take is not None else ""
    return f"{port.name} {_shape(graph.port_shape(port))}{take}"


def signature_line(graph: BlockGraph) -> str:
    """`(z [512], alpha) -> image [3, 4, 4]`: the network's inputs and outputs with shapes."""
    sig = graph.signature
    ins = ", ".join(_port(graph, p) for p in sig.inputs)
    outs = ", ".join(_port(graph, p) for p in sig.outputs)
    return f"({ins}) -> {outs if len(sig.outputs) == 1 else f'({outs})'}"


def dump_stage(graph: BlockGraph, stage: Stage) -> str:
    lines = [f"{graph.net} {stage}  params={param_count(graph):,}"]
    lines.append(f"  signature {signature_line(graph)}")
    lines += [_node_line(graph, node) for node in graph.nodes()]
    return "\n".join(lines) + "\n"


def dump(compiled: CompiledGraphs, stages: list[Stage] | None = None) -> str:
    """The graphs of the given stages (default: all) for G and D, as stable text."""
    spec = compiled.loaded
    header = (
        f"# progan-dsl graph dump of spec '{spec.spec.name}' "
        f"(sha256 {spec.hash[:16]}), fused_scale={'on' if compiled.fused else 'off'}\n"
    )
    parts = [header]
    for stage in stages or compiled.stages:
        for net in ("G", "D"):
            parts.append("\n" + dump_stage(compiled.stage_graph(net, stage), stage))
    return "".join(parts)
