"""The compiler passes over block graphs. Each is a pure function: graph in, new graph out.

Network passes run on the full graph of a network; stage passes cut out and finish the graph of
one growth stage. `pipeline.py` lists them in order.
"""

from __future__ import annotations

from dataclasses import replace

from progan_dsl.ir.graph import BlockGraph
from progan_dsl.ir.types import EdgeKind, Node, PortRole, Role, Shape, Signature, Stage
from progan_dsl.kinds import InferContext, get_kind
from progan_dsl.kinds.builtin import DownsampleLayer, UpsampleLayer
from progan_dsl.paper import FUSED_SCALE_KERNEL
from progan_dsl.spec import Issue, Spec, SpecError
from progan_dsl.spec import names as N


class ShapeError(SpecError):
    """A layer whose input shape it cannot take, or a block whose output does not fit the next
    one, reported at the line of the layer that breaks the shape (never at a key the spec does
    not write, such as a default toRGB)."""


def _ctx(spec: Spec, net: str, res: int) -> InferContext:
    arch = spec.architecture
    resolutions = arch.resolutions

    def channels(ref: object) -> int:
        if ref == "this":
            return arch.channels_at(res)
        if ref == "lower":
            if res == resolutions[0]:
                raise ValueError(
                    "'out: lower' at the base resolution: there is no lower resolution"
                )
            return arch.channels_at(res // 2)
        assert isinstance(ref, int)
        return ref

    return InferContext(
        net=net,
        resolution=res,
        spatial=arch.spatial(res) if res in resolutions else (0, 0),
        channels=channels,
        image_channels=arch.image_channels,
    )


def _located(node: Node, msg: str, graph: BlockGraph | None = None) -> ShapeError:
    """A shape error at `node`, or, when the spec does not write that node (a default toRGB or
    fromRGB, the fade-in path), at the nearest upstream node it writes: the layer whose output
    `node` could not take."""
    blamed = _blame(graph, node) if graph is not None else node
    where = f"at resolution {node.resolution}: " if node.resolution in range(1, 1 << 17) else ""
    ids = node.id if blamed is node else f"{node.id} cannot take the output of {blamed.id}"
    span = blamed.span
    if span is None:
        return ShapeError([Issue("<graph>", 1, 1, (), f"{node.id}: {where}{msg}")])
    return ShapeError([Issue(span.path, span.line, span.col, span.loc, f"{where}{msg} ({ids})")])


def _blame(graph: BlockGraph, node: Node) -> Node:
    current = node
    while current.span is None or not current.span.written:
        preds = graph.preds(current.id)  # data edges first, then the new block's fade-in path
        if not preds:
            return node
        current = preds[0][0]
    return current


def _block_outputs(graph: BlockGraph) -> list[Node]:
    """The last node of each resolution block: a block node none of whose successors is a block
    node of the same resolution."""
    out = []
    for node in graph.nodes():
        if node.role != Role.BLOCK or node.resolution <= 0:
            continue
        if not any(
            s.role == Role.BLOCK and s.resolution == node.resolution
            for s, _ in graph.succs(node.id)
        ):
            out.append(node)
    return out


def _maps(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _head_width(graph: BlockGraph) -> int:
    """Features of D's last layer: the score, then any class logits the signature takes."""
    return max((p.take[1] for p in graph.signature.outputs if p.take is not None), default=1)


def _check_block_output(node: Node, spec: Spec, head_width: int = 1) -> str | None:
    """What is wrong with the output of a block's last layer, if anything. A G block must output
    its resolution's maps (the next block and toRGB read them); a D block above the base must
    output what the next lower block's fromRGB gives, so the two can be blended and the lower
    block's weights fit both; D's base block must end in one score per image."""
    arch = spec.architecture
    shape = node.out_shape or ()
    res = node.resolution
    if node.net == "G":
        h, w = arch.spatial(res)
        if len(shape) != 3 or shape[1:] != (h, w):
            hint = " (does the block template start with an upsample?)" if len(shape) == 3 else ""
            return (
                f"a G block must output {h}x{w} feature maps here, but its last layer "
                f"outputs {_maps(shape)}{hint}"
            )
        return None
    if res == arch.base_resolution:
        if shape != (head_width,):
            return (
                f"D must end in one score per image, but its last layer outputs "
                f"{_maps((shape[0] - head_width + 1, *shape[1:]) if shape else shape)}; end "
                "last_block with {kind: dense, out: 1}"
            )
        return None
    want = (arch.channels_at(res // 2), *arch.spatial(res // 2))
    if shape != want:
        return (
            f"a D block must output what fromRGB gives one resolution down ({res // 2}), "
            f"{_maps(want)}, but its last layer outputs {_maps(shape)} (end the block with "
            "an 'out: lower' conv and a downsample?)"
        )
    return None


def infer_shapes(graph: BlockGraph, spec: Spec) -> BlockGraph:
    """Set in/out shapes of every node from its inputs, in topological order."""
    out = graph.copy()
    last = {n.id for n in _block_outputs(out)}
    for node in out.nodes():
        preds = out.preds(node.id)
        if not preds:
            if node.out_shape is None:
                raise _located(node, "node has no input")
            out.replace(node.with_(in_shape=node.out_shape))
            continue
        kind = get_kind(node.kind)
        side: tuple[Shape, ...] = ()
        in_shape: Shape | None
        if len(kind.inputs) > 1:  # inputs in call order; each its own shape
            in_shape, *rest = (out.node(p.id).out_shape or () for p, _ in preds)
            side = tuple(rest)
        else:
            shapes = {out.node(p.id).out_shape for p, _ in preds}
            if len(shapes) != 1:
                detail = ", ".join(
                    f"{p.id} {list(out.node(p.id).out_shape or ())}" for p, _ in preds
                )
                raise _located(node, f"inputs disagree in shape: {detail}", out)
            in_shape = shapes.pop()
        assert in_shape is not None
        try:
            ctx = replace(_ctx(spec, node.net, node.resolution), side_shapes=side)
            out_shape = kind.infer(node.layer, in_shape, ctx)
        except ValueError as err:
            raise _located(node, str(err), out) from None
        node = node.with_(in_shape=in_shape, out_shape=tuple(out_shape), side_shapes=side)
        out.replace(node)
        if node.id in last:
            problem = _check_block_output(node, spec, _head_width(out))
            if problem:
                raise _located(node, problem, out)
    return out


def fuse_scale(graph: BlockGraph, spec: Spec) -> BlockGraph:
    """Fuse nearest-upsample + 3x3 conv into one stride-2 transposed 4x4 conv (`conv_up`), and a
    3x3 conv + 2x2 average pooling into one stride-2 4x4 conv (`conv_down`).

    The fused node keeps the conv's id, so parameter names and shapes do not change.
    """
    out = graph.copy()
    for original in graph.nodes():
        if original.id not in out:
            continue
        node = out.node(original.id)  # as fused so far: a conv_up is not fused again
        succs = out.succs(node.id)
        if len(succs) != 1 or succs[0][1] != EdgeKind.DATA:
            continue
        nxt = succs[0][0]
        if len(out.preds(nxt.id)) != 1:
            continue
        kernel = getattr(nxt.layer, "kernel", None)
        if node.kind == "upsample" and nxt.kind == "conv" and kernel == FUSED_SCALE_KERNEL:
            fused = nxt.with_(kind="conv_up", in_shape=node.in_shape)
            _splice(out, first=node, second=nxt, fused=fused)
        kernel = getattr(node.layer, "kernel", None)
        if (
            node.kind == "conv"
            and nxt.kind == "downsample"
            and kernel == FUSED_SCALE_KERNEL
            and node.activation == "linear"
            and not node.normalize
            and getattr(nxt.layer, "takes_activation", False)
        ):
            fused = node.with_(kind="conv_down", activation=nxt.activation, out_shape=nxt.out_shape)
            _splice(out, first=node, second=nxt, fused=fused)
    return out


def _splice(graph: BlockGraph, *, first: Node, second: Node, fused: Node) -> None:
    """Replace the chain first -> second by one node `fused` (which has one of their ids)."""
    preds = graph.preds(first.id)
    succs = graph.succs(second.id)
    graph.remove(first.id)
    graph.remove(second.id)
    graph.add(fused)
    for p, kind in preds:
        graph.connect(p.id, fused.id, kind)
    for s, kind in succs:
        graph.connect(fused.id, s.id, kind)


def select_stage(graph: BlockGraph, spec: Spec, stage: Stage) -> BlockGraph:
    """Cut the stable network of `stage.resolution` out of the full graph."""
    res = stage.resolution
    keep = set()
    for node in graph.nodes():
        if node.role in (Role.INPUT, Role.COND):
            keep.add(node.id)
        elif node.role == Role.BLOCK and node.resolution <= res:
            keep.add(node.id)
        elif node.role in (Role.TO_RGB, Role.FROM_RGB) and node.resolution == res:
            keep.add(node.id)
    out = graph.subgraph(keep)
    if graph.net == "G":
        # the image comes out of this stage's toRGB
        to_rgb = N.node_id("G", N.block_name(res), N.TO_RGB)
        out.signature = _output_from(out.signature, PortRole.IMAGE, to_rgb)
    if graph.net == "D":
        # the image enters at this stage's resolution; only this stage's fromRGB reads it
        img = _image_input(out)
        shape = (spec.architecture.image_channels, *spec.architecture.spatial(res))
        out.replace(img.with_(out_shape=shape, in_shape=shape, resolution=res + 1))
        for node in out.nodes():
            if node.role == Role.BLOCK and node.resolution < res:
                for p, _ in out.preds(node.id):
                    if p.role == Role.FROM_RGB:
                        out.remove(p.id)
    return out


def _output_from(sig: Signature, role: PortRole, node_id: str) -> Signature:
    outputs = tuple(replace(p, node=node_id) if p.role == role else p for p in sig.outputs)
    return replace(sig, outputs=outputs)


def _image_input(graph: BlockGraph) -> Node:
    port = graph.signature.input(PortRole.IMAGE)
    assert port is not None, "D's signature has no image input"
    return graph.port_node(port)


def insert_fade(graph: BlockGraph, full: BlockGraph, spec: Spec, stage: Stage) -> BlockGraph:
    """For a fade stage: add the old resolution's RGB layer, the resampling on the skip path and
    the lerp `(1 - alpha) * old + alpha * new` (paper Figure 2)."""
    if stage.phase != "fade":
        return graph
    out = graph.copy()
    res, low = stage.resolution, stage.resolution // 2
    block = N.block_name(res)
    if out.net == "G":
        new_rgb = out.node(N.node_id("G", block, N.TO_RGB))
        old_rgb = full.node(N.node_id("G", N.block_name(low), N.TO_RGB))
        feed = full.preds(old_rgb.id)[0][0]
        out.add(old_rgb)
        out.connect(feed.id, old_rgb.id)
        up = out.add(
            Node(
                id=N.node_id("G", block, N.SKIP_UP),
                net="G",
                kind="upsample",
                resolution=res,
                role=Role.SKIP,
                layer=UpsampleLayer(kind="upsample"),
                span=new_rgb.span,
            )
        )
        out.connect(old_rgb.id, up.id)
        lerp = out.add(
            Node(
                id=N.node_id("G", block, N.FADE),
                net="G",
                kind="lerp",
                resolution=res,
                role=Role.FADE,
                span=new_rgb.span,
            )
        )
        out.connect(up.id, lerp.id, EdgeKind.FADE_SKIP)
        out.connect(new_rgb.id, lerp.id, EdgeKind.FADE_NEW)
        out.signature = _output_from(out.signature, PortRole.IMAGE, lerp.id)
        return out
    img = _image_input(out)
    new_rgb = out.node(N.node_id("D", block, N.FROM_RGB))
    old_rgb = full.node(N.node_id("D", N.block_name(low), N.FROM_RGB))
    low_first = next(s for s, _ in full.succs(old_rgb.id))
    block_last = next(p for p, _ in out.preds(low_first.id) if p.resolution == res)
    down = out.add(
        Node(
            id=N.node_id("D", block, N.SKIP_DOWN),
            net="D",
            kind="downsample",
            resolution=res,
            role=Role.SKIP,
            layer=DownsampleLayer(kind="downsample"),
            span=new_rgb.span,
        )
    )
    out.connect(img.id, down.id)
    out.add(old_rgb)
    out.connect(down.id, old_rgb.id)
    lerp = out.add(
        Node(
            id=N.node_id("D", block, N.FADE),
            net="D",
            kind="lerp",
            resolution=res,
            role=Role.FADE,
            span=new_rgb.span,
        )
    )
    out.disconnect(block_last.id, low_first.id)
    out.connect(old_rgb.id, lerp.id, EdgeKind.FADE_SKIP)
    out.connect(block_last.id, lerp.id, EdgeKind.FADE_NEW)
    out.connect(lerp.id, low_first.id)
    return out


def verify(graph: BlockGraph) -> BlockGraph:
    """Check the invariants every pass must keep: acyclic; the graph's inputs and outputs are
    exactly its signature's; every kind known, every shape set, shapes agree on every edge and
    output ranges fit; each node has as many inputs as its kind takes; lerps have one new and
    one skip input."""
    problems: list[str] = []
    sig = graph.signature
    if not graph.is_acyclic():
        problems.append("graph has a cycle")
    declared = sorted(p.node for p in sig.inputs if p.node is not None)
    if [n.id for n in graph.sources()] != declared:
        problems.append(f"inputs {[n.id for n in graph.sources()]} != signature {declared}")
    produced = sorted({p.node for p in sig.outputs if p.node is not None})
    if [n.id for n in graph.sinks()] != produced:
        problems.append(f"outputs {[n.id for n in graph.sinks()]} != signature {produced}")
    if [p.role for p in sig.inputs].count(PortRole.ALPHA) != 1:
        problems.append("the signature must take alpha once")
    for port in sig.outputs:
        if port.node is not None and port.node in graph and port.take is not None:
            width = (graph.port_node(port).out_shape or (0,))[0]
            if not 0 <= port.take[0] < port.take[1] <= width:
                problems.append(f"output {port.name}: range {port.take} outside [0, {width})")
    for node in graph.nodes():
        try:
            get_kind(node.kind)
        except KeyError as err:
            problems.append(f"{node.id}: {err.args[0]}")
        if node.in_shape is None or node.out_shape is None:
            problems.append(f"{node.id}: shape not inferred")
        preds = graph.preds(node.id)
        wants = (node.in_shape, *node.side_shapes) if node.side_shapes else None
        for i, (p, _) in enumerate(preds):
            want = wants[i] if wants is not None else node.in_shape
            if p.out_shape != want:
                problems.append(f"{p.id} -> {node.id}: {p.out_shape} != {want}")
        if node.kind == "lerp":
            kinds = sorted(k.value for _, k in preds)
            if kinds != ["fade_new", "fade_skip"]:
                problems.append(f"{node.id}: lerp inputs {kinds}")
        elif node.kind != "input" and len(preds) != len(get_kind(node.kind).inputs):
            problems.append(f"{node.id}: {len(preds)} inputs")
    if problems:
        raise AssertionError("IR verification failed:\n  " + "\n  ".join(problems))
    return graph
