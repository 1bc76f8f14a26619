"""Builder: spec -> the full block graph of each network (every resolution, every toRGB/fromRGB).

Per-stage graphs are cut out of these by `passes.select_stage`. Node ids are stable dotted names
(`G.b64.conv1`, `D.b4.mbstd`) that become parameter names, so weights carry over between stages.
Names come from `spec.names` (the spec rules already refused duplicate and reserved ones).
Layer defaults (activation, gain, pixel norm) are resolved here, once.

Each network gets its `Signature` here: G takes (z[, labels], alpha) and gives the image; D takes
(img[, labels], alpha) and gives the scores[, class logits]. A conditional spec's labels are
wired from the records of `kinds.conditioning`, by mode, never by special cases here.
"""

from __future__ import annotations

from typing import Any

from progan_dsl.ir.graph import BlockGraph
from progan_dsl.ir.types import Node, Port, PortRole, Role, Signature, Span
from progan_dsl.kinds import LayerBase, get_kind
from progan_dsl.kinds.conditioning import D_MODES, G_MODES
from progan_dsl.spec import LoadedSpec, Spec
from progan_dsl.spec import names as N


class _Ctx:
    def __init__(self, loaded: LoadedSpec) -> None:
        self.loaded = loaded
        self.spec: Spec = loaded.spec
        self.arch = loaded.spec.architecture

    def span(self, loc: tuple[Any, ...]) -> Span:
        doc = self.loaded.doc
        where = doc.where(loc)
        return Span(where.path, where.line, where.col, loc, written=doc.has(loc))

    def node(
        self, net: str, res: int, name: str, layer: LayerBase, role: Role, loc: tuple[Any, ...]
    ) -> Node:
        kind = get_kind(layer.kind)  # type: ignore[attr-defined]
        # A downsample is linear unless it says otherwise or takes over the activation of the
        # conv before it (`_move_activation_past_downsample`): pooling then activation once.
        default = "linear" if kind.name == "downsample" else self.arch.activation.kind
        act = getattr(layer, "activation", None) or default
        normalize = getattr(layer, "normalize", None)
        if normalize is None:
            normalize = (
                net == "G"
                and role == Role.BLOCK
                and kind.has_weights
                and self.arch.pixel_norm.enabled
            )
        return Node(
            id=N.node_id(net, N.block_name(res), name),
            net=net,
            kind=kind.name,
            resolution=res,
            role=role,
            layer=layer,
            activation=act if kind.has_activation else "linear",
            slope=self.arch.activation.slope,
            gain=getattr(layer, "gain", None) or self.arch.gain,
            normalize=bool(normalize),
            norm_eps=self.arch.pixel_norm.epsilon,
            equalized=self.arch.equalized_lr,
            span=self.span(loc),
        )


def _block_layers(
    net_spec: Any, key_first: str, res: int, base: int, net: str
) -> tuple[list[LayerBase], tuple[Any, ...]]:
    if res == base:
        return getattr(net_spec, key_first), ("architecture", net, key_first)
    if res in net_spec.overrides:
        return net_spec.overrides[res], ("architecture", net, "overrides", res)
    return net_spec.block, ("architecture", net, "block")


def _add_block(
    ctx: _Ctx, graph: BlockGraph, net: str, res: int, layers: list[LayerBase], loc: tuple[Any, ...]
) -> list[Node]:
    names = N.layer_names(layers)  # unique and free of reserved names: a spec rule checks
    nodes = [
        graph.add(ctx.node(net, res, name, layer, Role.BLOCK, loc + (i,)))
        for i, (name, layer) in enumerate(zip(names, layers))
    ]
    _move_activation_past_downsample(graph, nodes)
    for a, b in zip(nodes, nodes[1:]):
        graph.connect(a.id, b.id)
    return [graph.node(n.id) for n in nodes]


def _move_activation_past_downsample(graph: BlockGraph, nodes: list[Node]) -> None:
    """A downsample right after a conv applies that conv's activation after pooling.

    Bias commutes with average pooling, so conv -> pool -> bias -> act is what the official
    fused_scale networks compute, and the fusion pass can then merge conv + pool exactly.
    """
    for conv, down in zip(nodes, nodes[1:]):
        takes = getattr(down.layer, "takes_activation", False)
        if conv.kind == "conv" and down.kind == "downsample" and takes and not conv.normalize:
            graph.replace(conv.with_(activation="linear"))
            graph.replace(down.with_(activation=conv.activation))


def build_generator(loaded: LoadedSpec) -> BlockGraph:
    ctx = _Ctx(loaded)
    arch = ctx.arch
    g = BlockGraph("G")
    z = g.add(
        Node(
            id=N.node_id("G", N.LATENT_BLOCK, N.LATENT),
            net="G",
            kind="input",
            resolution=0,
            role=Role.INPUT,
            out_shape=(arch.latent_size,),
            span=ctx.span(("architecture", "latent_size")),
        )
    )
    prev = z.id
    inputs = [Port(INPUT_NAMES["G"], PortRole.LATENT, z.id)]
    cond = arch.conditioning
    if cond is not None:
        labels = g.add(_labels_input(ctx, "G"))
        inputs.append(Port(N.LABELS, PortRole.LABELS, labels.id))
        join = g.add(
            Node(
                id=N.node_id("G", N.LATENT_BLOCK, N.COND),
                net="G",
                kind=G_MODES[cond.generator].kind,
                resolution=0,
                role=Role.COND,
                span=ctx.span(("architecture", "conditioning", "generator")),
            )
        )
        g.connect(prev, join.id, slot=0)
        g.connect(labels.id, join.id, slot=1)
        prev = join.id
    if arch.pixel_norm.latent:
        norm = g.add(
            Node(
                id=N.node_id("G", N.LATENT_BLOCK, N.LATENT_NORM),
                net="G",
                kind="pixel_norm",
                resolution=0,
                role=Role.BLOCK,
                norm_eps=arch.pixel_norm.epsilon,
                span=ctx.span(("architecture", "pixel_norm")),
            )
        )
        g.connect(prev, norm.id)
        prev = norm.id
    rgb = arch.generator.to_rgb.model_copy(update={"out": arch.image_channels})
    for res in arch.resolutions:
        layers, loc = _block_layers(
            arch.generator, "first_block", res, arch.base_resolution, "generator"
        )
        nodes = _add_block(ctx, g, "G", res, layers, loc)
        g.connect(prev, nodes[0].id)
        prev = nodes[-1].id
        to_rgb = g.add(
            ctx.node("G", res, N.TO_RGB, rgb, Role.TO_RGB, ("architecture", "generator", "to_rgb"))
        )
        g.connect(prev, to_rgb.id)
    g.signature = Signature(
        inputs=(*inputs, Port("alpha", PortRole.ALPHA)),
        outputs=(Port("image", PortRole.IMAGE, to_rgb.id),),
    )
    return g


INPUT_NAMES = {"G": "z", "D": "img"}  # the argument names of generated modules


def _labels_input(ctx: _Ctx, net: str) -> Node:
    classes = ctx.arch.num_classes
    return Node(
        id=N.node_id(net, N.LABELS_BLOCK, N.LABELS),
        net=net,
        kind="input",
        resolution=0,
        role=Role.INPUT,
        out_shape=(classes,),
        span=ctx.span(("architecture", "conditioning", "classes")),
    )


def _condition_head(ctx: _Ctx, d: BlockGraph, head: Node, inputs: list[Port]) -> list[Port]:
    """Turn D's last layer into the conditioning mode's head; return D's outputs."""
    cond = ctx.arch.conditioning
    if cond is None:
        return [Port("scores", PortRole.SCORES, head.id)]
    mode = D_MODES[cond.discriminator]
    classes = cond.classes
    layer = head.layer
    out = getattr(layer, "out", None)
    if mode.class_logits and isinstance(out, int):  # the score, then one logit per class
        layer = layer.model_copy(update={"out": out + classes})  # type: ignore[union-attr]
    d.replace(head.with_(kind=mode.head_kind, layer=layer))
    if mode.takes_labels:
        labels = d.add(_labels_input(ctx, "D"))
        d.connect(labels.id, head.id, slot=1)
        inputs.append(Port(N.LABELS, PortRole.LABELS, labels.id))
    if not mode.class_logits:
        return [Port("scores", PortRole.SCORES, head.id)]
    return [
        Port("scores", PortRole.SCORES, head.id, take=(0, 1)),
        Port("class_logits", PortRole.CLASS_LOGITS, head.id, take=(1, 1 + classes)),
    ]


def build_discriminator(loaded: LoadedSpec) -> BlockGraph:
    ctx = _Ctx(loaded)
    arch = ctx.arch
    d = BlockGraph("D")
    final = arch.final_resolution
    img = d.add(
        Node(
            id=N.node_id("D", N.IMAGE_BLOCK, N.IMAGE),
            net="D",
            kind="input",
            resolution=final + 1,
            role=Role.INPUT,
            out_shape=(arch.image_channels, *arch.spatial(final)),
            span=ctx.span(("architecture", "image_channels")),
        )
    )
    prev: str | None = None
    for res in reversed(arch.resolutions):
        from_rgb = d.add(
            ctx.node(
                "D",
                res,
                N.FROM_RGB,
                arch.discriminator.from_rgb,
                Role.FROM_RGB,
                ("architecture", "discriminator", "from_rgb"),
            )
        )
        d.connect(img.id, from_rgb.id)
        layers, loc = _block_layers(
            arch.discriminator, "last_block", res, arch.base_resolution, "discriminator"
        )
        nodes = _add_block(ctx, d, "D", res, layers, loc)
        d.connect(from_rgb.id, nodes[0].id)
        if prev is not None:
            d.connect(prev, nodes[0].id)
        prev = nodes[-1].id
    assert prev is not None
    inputs = [Port(INPUT_NAMES["D"], PortRole.IMAGE, img.id)]
    outputs = _condition_head(ctx, d, d.node(prev), inputs)
    d.signature = Signature(inputs=(*inputs, Port("alpha", PortRole.ALPHA)), outputs=tuple(outputs))
    return d
