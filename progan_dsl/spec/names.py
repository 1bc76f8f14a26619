"""Node names inside a block: each layer kind's default name, the numbering of repeated kinds,
and the names the IR builder gives the nodes it adds itself (reserved: no layer may take them).

One naming authority: the spec rules (`check_layer_names_are_unique_and_free`) and the IR builder
(`progan_dsl.ir.build`, `progan_dsl.ir.passes.insert_fade`) both name nodes from here, so a name
the rules accept is a name the builder can use. A node id is `<net>.<block>.<name>`, with block
`b<resolution>` (`G.b64.conv1`); the inputs sit in their own blocks (`G.z.latent`, `D.img.image`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

# Default node names per spec kind (numbered when a block has several of a kind: conv0, conv1).
# A kind not listed (one registered from outside) is named after itself.
DEFAULT_NAMES = {
    "conv": "conv",
    "upsample": "up",
    "downsample": "down",
    "project": "project",
    "dense": "dense",
    "minibatch_stddev": "mbstd",
    "pixel_norm": "norm",
}

# Nodes the IR builder adds to a resolution block (b<res>) besides the spec's layers.
TO_RGB = "torgb"  # G: the block's toRGB conv (architecture.generator.to_rgb)
FROM_RGB = "fromrgb"  # D: the block's fromRGB conv (architecture.discriminator.from_rgb)
SKIP_UP = "skip_up"  # G fade-in: nearest upsampling of the old toRGB output
SKIP_DOWN = "skip_down"  # D fade-in: average pooling of the image for the old fromRGB
FADE = "fade"  # both: the fade-in lerp (1 - alpha) * old + alpha * new

RESERVED: dict[str, str] = {
    FADE: "the fade-in lerp",
    FROM_RGB: "D's fromRGB layer",
    SKIP_DOWN: "the downsampling on D's fade-in skip path",
    SKIP_UP: "the upsampling on G's fade-in skip path",
    TO_RGB: "G's toRGB layer",
}

# The input blocks and their nodes (ids outside the b<res> blocks, so no layer can meet them).
LATENT_BLOCK, LATENT, LATENT_NORM = "z", "latent", "norm"  # G.z.latent, G.z.norm
IMAGE_BLOCK, IMAGE = "img", "image"  # D.img.image
LABELS_BLOCK, LABELS = "y", "labels"  # G.y.labels, D.y.labels: one-hot labels (conditional)
COND = "cond"  # G.z.cond: the latent and labels joined (conditional)


def block_name(resolution: int) -> str:
    return f"b{resolution}"


def node_id(net: str, block: str, name: str) -> str:
    return f"{net}.{block}.{name}"


def _kind(layer: Any) -> str:
    return str(layer.kind)


def layer_names(layers: Sequence[Any]) -> list[str]:
    """The node name of each layer of one block: its `name`, else its kind's default name,
    numbered in order when the block has several layers of that kind."""
    counts = Counter(_kind(layer) for layer in layers)
    seen: Counter[str] = Counter()
    out = []
    for layer in layers:
        kind = _kind(layer)
        if layer.name:
            out.append(str(layer.name))
            continue
        base = DEFAULT_NAMES.get(kind, kind)
        out.append(f"{base}{seen[kind]}" if counts[kind] > 1 else base)
        seen[kind] += 1
    return out


def name_problems(layers: Sequence[Any]) -> list[tuple[tuple[Any, ...], str]]:
    """(loc inside the block list, message) for each layer whose node name is reserved or taken
    by an earlier layer of the same block. The loc is the layer's `name` key when it has one,
    else the layer itself."""
    out: list[tuple[tuple[Any, ...], str]] = []
    first: dict[str, int] = {}
    for i, (name, layer) in enumerate(zip(layer_names(layers), layers, strict=True)):
        loc: tuple[Any, ...] = (i, "name") if layer.name else (i,)
        given = "" if layer.name else f" (the default name of a {_kind(layer)} layer here)"
        if name in RESERVED:
            out.append(
                (
                    loc,
                    f"layer name '{name}'{given} is reserved for {RESERVED[name]} "
                    f"(reserved: {', '.join(sorted(RESERVED))}); name the layer otherwise",
                )
            )
        elif name in first:
            out.append(
                (
                    loc,
                    f"duplicate layer name '{name}' in one block{given} (layer "
                    f"[{first[name]}] of the block is named '{name}' too)",
                )
            )
        else:
            first[name] = i
    return out
