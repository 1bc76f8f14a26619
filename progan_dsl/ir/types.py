"""IR types: frozen node and edge records, stages. Nothing here knows about text or torch."""

from __future__ import annotations

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


class Role(str, Enum):
    INPUT = "input"
    BLOCK = "block"
    TO_RGB = "to_rgb"
    FROM_RGB = "from_rgb"
    SKIP = "skip"  # resampling on the fade-in skip path
    FADE = "fade"  # the lerp itself


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
    in_shape: Shape | None = None
    out_shape: Shape | None = None
    span: Span | None = None

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
