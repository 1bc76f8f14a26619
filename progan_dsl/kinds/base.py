"""The `LayerKind` record, the registry, and the base model of a layer's spec parameters."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Names that reach generated code: a node name becomes part of a Python identifier.
Identifier = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$", strict=True)
]
Activation = Literal["lrelu", "relu", "linear"]
# A channel count: "this" = the width of the block's resolution, "lower" = the width of the next
# lower resolution (the D block's last conv, Table 2), or an explicit number.
ChannelRef = Literal["this", "lower"] | Annotated[int, Field(ge=1, le=65536)]

Shape = tuple[int, ...]  # (C, H, W) for feature maps, (C,) for vectors


class LayerBase(BaseModel):
    """Fields every layer has. Each kind subclasses it with `kind: Literal[...]` and its params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Identifier | None = Field(
        None,
        description="Node name inside its block (lowercase identifier); default from the kind, "
        "numbered when a block has several (conv0, conv1).",
    )


@dataclass(frozen=True)
class InferContext:
    """What shape inference may know about the block a layer sits in."""

    net: str  # "G" or "D"
    resolution: int  # the block's resolution (longer side)
    spatial: tuple[int, int]  # (H, W) of the block's feature maps
    channels: Callable[[ChannelRef], int]  # resolves "this" / "lower" / numbers
    image_channels: int


@dataclass(frozen=True)
class NodeFacts:
    """The resolved facts of one IR node that codegen needs (mirrors `ir.Node`, no ir import)."""

    kind: str
    in_shape: Shape
    out_shape: Shape
    layer: LayerBase | None
    activation: str
    slope: float
    gain: float
    normalize: bool
    norm_eps: float
    equalized: bool


@dataclass(frozen=True)
class LayerKind:
    """Everything about one kind of layer, from spec to diagram."""

    name: str
    params: type[LayerBase] | None  # None: an IR-only kind (fade lerp, fused convs, inputs)
    infer: Callable[[Any, Shape, InferContext], Shape]  # (layer, in_shape, ctx) -> out_shape
    count: Callable[[NodeFacts], int]  # trainable parameters
    runtime: str  # "module:Class" of the nn.Module that runs it
    ctor: Callable[[NodeFacts], dict[str, Any]]  # constructor keyword arguments
    label: Callable[[NodeFacts], str]  # short label for tables and diagrams ("Conv 3x3")
    style: dict[str, str] = field(default_factory=dict)  # graphviz node attributes
    has_activation: bool = False
    has_weights: bool = False
    description: str = ""

    @property
    def runtime_module(self) -> str:
        return self.runtime.split(":")[0]

    @property
    def runtime_class(self) -> str:
        return self.runtime.split(":")[1]


REGISTRY: dict[str, LayerKind] = {}


def register(kind: LayerKind) -> LayerKind:
    """Add a layer kind (built-in or from outside the package). Names are unique."""
    if not kind.name.isidentifier() or kind.name != kind.name.lower():
        raise ValueError(f"layer kind name must be a lowercase identifier, got {kind.name!r}")
    if kind.name in REGISTRY and REGISTRY[kind.name] is not kind:
        raise ValueError(f"layer kind {kind.name!r} is already registered")
    mod, _, cls = kind.runtime.partition(":")
    if not cls or not all(p.isidentifier() for p in mod.split(".")) or not cls.isidentifier():
        raise ValueError(f"runtime must be 'package.module:Class', got {kind.runtime!r}")
    REGISTRY[kind.name] = kind
    return kind


def spec_kind_names() -> list[str]:
    """Kinds a spec may name (IR-only kinds excluded), sorted."""
    return sorted(name for name, k in REGISTRY.items() if k.params is not None)


def get_kind(name: str) -> LayerKind:
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown layer kind {name!r}{hint}") from None
