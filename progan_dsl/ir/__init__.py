"""The block-graph IR: typed nodes on networkx, the builder, passes, verification, text dump.

Does not import torch.
"""

from progan_dsl.ir.graph import BlockGraph
from progan_dsl.ir.pipeline import (
    CompiledGraphs,
    compile_graphs,
    param_count,
    select_stages,
    stages,
)
from progan_dsl.ir.types import EdgeKind, Node, Role, Span, Stage

__all__ = [
    "BlockGraph",
    "CompiledGraphs",
    "EdgeKind",
    "Node",
    "Role",
    "Span",
    "Stage",
    "compile_graphs",
    "param_count",
    "select_stages",
    "stages",
]
