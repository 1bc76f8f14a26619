"""Layer kinds: the one place a layer kind is defined.

A `LayerKind` bundles everything the pipeline needs to know about one kind of layer: its spec
parameters (a pydantic model), shape inference and parameter count (used by the IR), the runtime
module and constructor arguments (used by codegen), and its diagram style (used by render).
Adding a kind, from inside or outside the package, is one `register(LayerKind(...))` call;
see `examples/custom_kind/blur.py`. No torch here: runtime classes are named, not imported.
"""

from progan_dsl.kinds import builtin as _builtin  # noqa: F401  (registers the built-in kinds)
from progan_dsl.kinds.base import (
    REGISTRY,
    InferContext,
    LayerBase,
    LayerKind,
    NodeFacts,
    SpecModel,
    get_kind,
    register,
    spec_kind_names,
)

__all__ = [
    "REGISTRY",
    "InferContext",
    "LayerBase",
    "LayerKind",
    "NodeFacts",
    "SpecModel",
    "get_kind",
    "register",
    "spec_kind_names",
]
