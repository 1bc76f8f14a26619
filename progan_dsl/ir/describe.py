"""One description of a node, read by every view that prints nodes: the graph dump
(`ir.dump`), the paper-style table (`ir.table`), the comments of generated code
(`codegen/view.py`) and the diagrams (`render.py`).

Two facts about activations, each decided here once:
- `activation`: what the layer computes with, as its runtime constructor gets it ("linear"
  included); None for a kind that takes no activation. The dump and the code comments show it.
- `nonlinearity`: what a reader of the paper's table is told: the activation when there is one,
  "linear" for a weighted layer without one (toRGB, D's output), None for a resampling or other
  parameter-free node that applies nothing. The table and the diagrams show it.
"""

from __future__ import annotations

from dataclasses import dataclass

from progan_dsl.ir.types import Node, Shape
from progan_dsl.kinds import get_kind


@dataclass(frozen=True)
class NodeDescription:
    label: str  # the kind's short label: "Conv 3x3", "Upsample + Conv 3x3", "Minibatch stddev"
    activation: str | None  # runtime activation ("linear" included); None: the kind takes none
    nonlinearity: str | None  # "lrelu", "relu", "linear" (weighted, none applied) or None
    normalize: bool  # pixel norm after the activation
    kernel: int | None  # conv kernel size; None for layers without one
    in_channels: int
    out_channels: int
    out_shape: Shape
    params: int  # trainable parameters, as the kind counts them
    gain: float | None  # He-init gain of a weighted layer; None for parameter-free kinds


def describe(node: Node) -> NodeDescription:
    """The description of a node whose shapes are inferred."""
    kind = get_kind(node.kind)
    facts = node.facts()
    activation = node.activation if kind.has_activation else None
    if activation not in (None, "linear"):
        nonlinearity: str | None = activation
    else:
        nonlinearity = "linear" if kind.has_weights else None
    kernel = getattr(node.layer, "kernel", None)
    return NodeDescription(
        label=kind.label(facts),
        activation=activation,
        nonlinearity=nonlinearity,
        normalize=node.normalize,
        kernel=int(kernel) if kernel is not None else None,
        in_channels=facts.in_shape[0] if facts.in_shape else 0,
        out_channels=facts.out_shape[0] if facts.out_shape else 0,
        out_shape=facts.out_shape,
        params=kind.count(facts),
        gain=node.gain if kind.has_weights else None,
    )
