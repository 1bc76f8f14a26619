"""IR types: frozen node and edge records, stages. Nothing here knows about text or torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Literal

from progan_dsl.kinds import LayerBase, NodeFacts
from progan_dsl.paper import LRELU_SLOPE, PIXEL_NORM_EPS

Shape = tuple[int, ...]
Phase = Literal["fade", "stable"]
NET_NAME = {"G": "Generator", "D": "Discriminator"}


class EdgeKind(str, Enum):
    DATA = "data"
    FADE_NEW = "fade_new"  # the new block's path into the fade-in lerp (weight alpha)
    FADE_SKIP = "fade_skip"  # the old resolution's path into the lerp (weight 1 - alpha)


class PortRole(str, Enum):
    """What a network input or output carries. Callers find arguments and results by role."""

    LATENT = "latent"  # G: z ~ N(0, I), [N, latent_size]
    LABELS = "labels"  # one-hot class labels, float [N, classes]
    IMAGE = "image"  # G's output, D's input: [N, C, H, W] in [-1, 1]
    ALPHA = "alpha"  # the fade-in weight, a 0-dim tensor in [0, 1]
    SCORES = "scores"  # D: one realness score per image, [N, 1]
    CLASS_LOGITS = "class_logits"  # D (auxiliary classifier): [N, classes]


@dataclass(frozen=True)
class Port:
    """One named input or output of a network. `node`: the IR node that holds the input or
    produces the output (None for alpha, which is an argument and no node). `take`: for an
    output, the feature range [start, stop) of the node's output it is (D's last dense layer
    emits the score and the class logits side by side)."""

    name: str  # the argument / result name in generated code and exports
    role: PortRole
    node: str | None = None
    take: tuple[int, int] | None = None


@dataclass(frozen=True)
class Signature:
    """What a network takes and gives, in call order. Every stage of a network has the same
    signature (alpha included: a stable stage accepts and ignores it), so callers bind arguments
    by role with `args` and read results with `results`, never by position or phase."""

    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]

    def input(self, role: PortRole) -> Port | None:
        return next((p for p in self.inputs if p.role == role), None)

    def output(self, role: PortRole) -> Port | None:
        return next((p for p in self.outputs if p.role == role), None)

    def takes(self, role: PortRole) -> bool:
        return self.input(role) is not None

    def gives(self, role: PortRole) -> bool:
        return self.output(role) is not None

    def args(self, values: Mapping[PortRole, Any]) -> tuple[Any, ...]:
        """The positional arguments of a call, from values by role. Every input the signature
        has must be given, except alpha (None: a stable stage's default)."""
        out = []
        for port in self.inputs:
            if port.role in values:
                out.append(values[port.role])
            elif port.role == PortRole.ALPHA:
                out.append(None)
            else:
                raise KeyError(f"a call of this network needs its '{port.name}' input")
        return tuple(out)

    def results(self, result: Any) -> dict[PortRole, Any]:
        """A call's result by role: one output is returned as it is, several as a tuple."""
        values: Sequence[Any] = (result,) if len(self.outputs) == 1 else result
        return {port.role: value for port, value in zip(self.outputs, values, strict=True)}


class Role(str, Enum):
    INPUT = "input"
    BLOCK = "block"
    TO_RGB = "to_rgb"
    FROM_RGB = "from_rgb"
    SKIP = "skip"  # resampling on the fade-in skip path
    FADE = "fade"  # the lerp itself
    COND = "cond"  # where labels enter (G's latent + labels concatenation)


@dataclass(frozen=True)
class Span:
    """Where in the spec a node came from. `written`: whether the spec writes `loc` itself; a
    node from a default (toRGB, fromRGB) points at the nearest key that is written."""

    path: str
    line: int
    col: int
    loc: tuple[Any, ...] = ()
    written: bool = True

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}" if self.line else self.path


@dataclass(frozen=True)
class Node:
    """One layer of a block graph. `id` is the stable dotted name (`G.b64.conv1`)."""

    id: str
    net: str  # "G" or "D"
    kind: str  # a registered layer kind
    resolution: int  # the block it belongs to
    role: Role
    layer: LayerBase | None = None  # the spec parameters, if any
    activation: str = "linear"
    slope: float = LRELU_SLOPE
    gain: float = 1.0  # no scaling; the builder sets every weighted node's gain
    normalize: bool = False
    norm_eps: float = PIXEL_NORM_EPS
    equalized: bool = True
    in_shape: Shape | None = None  # the first input's shape
    out_shape: Shape | None = None
    span: Span | None = None
    side_shapes: tuple[Shape, ...] = ()  # shapes of the further inputs of a multi-input kind

    @property
    def attr(self) -> str:
        """The Python attribute / parameter prefix: `G.b64.conv1` -> `b64_conv1`."""
        return self.id.split(".", 1)[1].replace(".", "_")

    @property
    def block(self) -> str:
        return self.id.split(".")[1]

    def with_(self, **changes: Any) -> Node:
        return replace(self, **changes)

    def facts(self) -> NodeFacts:
        assert self.in_shape is not None and self.out_shape is not None, self.id
        return NodeFacts(
            kind=self.kind,
            in_shape=self.in_shape,
            out_shape=self.out_shape,
            side_shapes=self.side_shapes,
            layer=self.layer,
            activation=self.activation,
            slope=self.slope,
            gain=self.gain,
            normalize=self.normalize,
            norm_eps=self.norm_eps,
            equalized=self.equalized,
        )


@dataclass(frozen=True, order=True)
class Stage:
    """One growth stage: a resolution and a phase (fading the new block in, or stable)."""

    resolution: int
    phase: Phase

    @property
    def name(self) -> str:
        return f"{self.resolution}_{self.phase}"

    def __str__(self) -> str:
        return f"{self.resolution}/{self.phase}"
