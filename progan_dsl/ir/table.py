"""The paper-style layer table (Table 2) of a network stage: layer, activation, output shape,
parameters, with exact totals. Read from the unfused graph, as the paper lists the layers."""

from __future__ import annotations

from dataclasses import dataclass

from progan_dsl.ir.describe import describe
from progan_dsl.ir.graph import BlockGraph
from progan_dsl.ir.types import NET_NAME, Role
from progan_dsl.spec import names as N

ACTIVATION_NAMES = {"lrelu": "LReLU"}  # as Table 2 writes them


@dataclass(frozen=True)
class Row:
    node_id: str
    layer: str
    activation: str
    shape: str
    params: int


def _shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"{shape[0]} x 1 x 1"
    return " x ".join(map(str, shape))


def rows(graph: BlockGraph) -> list[Row]:
    out = []
    for node in graph.nodes():
        if node.role == Role.BLOCK and node.block == N.LATENT_BLOCK:
            continue  # the latent normalisation is not a row of Table 2
        desc = describe(node)
        act = desc.nonlinearity or "-"
        out.append(
            Row(
                node.id,
                desc.label,
                ACTIVATION_NAMES.get(act, act),
                _shape(desc.out_shape),
                desc.params,
            )
        )
    return out


def _human(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}k"
    return str(n) if n else "-"


def format_table(graph: BlockGraph) -> str:
    table = rows(graph)
    total = sum(r.params for r in table)
    head = f"{NET_NAME[graph.net]:<22}{'Act.':<9}{'Output shape':<20}{'Params':>8}  {'exact':>12}"
    lines = [head, "-" * len(head)]
    for r in table:
        exact = f"{r.params:,}" if r.params else ""
        lines.append(
            f"{r.layer:<22}{r.activation:<9}{r.shape:<20}{_human(r.params):>8}  {exact:>12}"
        )
    lines.append("-" * len(head))
    lines.append(f"{'Total trainable parameters':<51}{_human(total):>8}  {total:>12,}")
    return "\n".join(lines) + "\n"
