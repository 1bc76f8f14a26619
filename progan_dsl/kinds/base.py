"""The `LayerKind` record, the registry, the base model of every spec model (`SpecModel`: strict,
closed, and naming its allowed keys when it meets an unknown one) and of a layer's parameters."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

# Names that reach generated code: a node name becomes part of a Python identifier.
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$", strict=True)]
Activation = Literal["lrelu", "relu", "linear"]
# A channel count: "this" = the width of the block's resolution, "lower" = the width of the next
# lower resolution (the D block's last conv, Table 2), or an explicit number.
ChannelRef = Literal["this", "lower"] | Annotated[StrictInt, Field(ge=1, le=65536)]

Shape = tuple[int, ...]  # (C, H, W) for feature maps, (C,) for vectors

_CORE_ERROR_TYPES = frozenset(get_args(ErrorType))


def unknown_key_message(key: object, allowed: list[str]) -> str:
    """`unknown key 'krnel' (did you mean 'kernel'? allowed: name, kind, kernel, ...)`."""
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key '{key}' ({hint}allowed: {', '.join(allowed)})"


def _rebuilt(error: Any, model: type[SpecModel]) -> InitErrorDetails:
    """One error of a `ValidationError` as raisable details; this model's unknown keys become
    `unknown_key` errors whose message lists the keys the model allows."""
    loc, ctx = tuple(error["loc"]), error.get("ctx")
    if error["type"] == "extra_forbidden" and len(loc) == 1:
        allowed = model.allowed_keys()
        kind: Any = PydanticCustomError(
            "unknown_key", unknown_key_message(loc[0], allowed), {"allowed": allowed}
        )
    elif error["type"] in _CORE_ERROR_TYPES:
        kind = error["type"]
    else:  # a custom error raised below (spec rules, layer kinds): keep its text as it is
        kind = PydanticCustomError(error["type"], error["msg"], ctx)
        ctx = None
    details = InitErrorDetails(type=kind, loc=loc, input=error.get("input"))
    if ctx is not None:
        details["ctx"] = ctx
    return details


class SpecModel(BaseModel):
    """Base of every model of the spec language (spec sections and layer parameters).

    Closed (`extra="forbid"`), frozen, no NaN or infinity in floats. An unknown key is reported
    by the model it was written in, as an `unknown_key` error that names the allowed keys (its
    `ctx["allowed"]`) and the closest one: no reflection over the type tree needed to say so.
    Fields that must not take a bool for a number use pydantic's Strict types.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def allowed_keys(cls) -> list[str]:
        """The keys a mapping of this model may have, in declaration order."""
        return list(cls.model_fields)

    @model_validator(mode="wrap")
    @classmethod
    def _report_unknown_keys(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as err:
            errors = err.errors()
            if not any(e["type"] == "extra_forbidden" and len(e["loc"]) == 1 for e in errors):
                raise
            rebuilt = [_rebuilt(e, cls) for e in errors]
            raise ValidationError.from_exception_data(err.title, rebuilt) from None


class LayerBase(SpecModel):
    """Fields every layer has. Each kind subclasses it with `kind: Literal[...]` and its params."""

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
    side_shapes: tuple[Shape, ...] = ()  # shapes of a multi-input kind's further inputs


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
    side_shapes: tuple[Shape, ...] = ()  # shapes of a multi-input kind's further inputs


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
    # Named inputs, in call order: the first is the data path (its shape is `in_shape`); a kind
    # with more (concat, projection) is wired by the builder and called with all of them.
    inputs: tuple[str, ...] = ("x",)

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
