"""`BlockGraph`: a thin typed wrapper over `networkx.DiGraph`.

Nodes are `Node` records stored under their id; edges carry an `EdgeKind` and, into a kind with
several inputs, the input `slot` they feed. The graph's `signature` names its inputs and outputs
(nodes of the graph, by role). Code outside `ir/` uses these methods and never touches the raw
attribute dicts.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from progan_dsl.ir.types import EdgeKind, Node, Port, Shape, Signature


class BlockGraph:
    def __init__(self, net: str, signature: Signature | None = None) -> None:
        self.net = net
        self.signature = signature or Signature((), ())
        self._g: nx.DiGraph = nx.DiGraph()

    # -- building --
    def add(self, node: Node) -> Node:
        if node.id in self._g:
            raise ValueError(f"duplicate node id {node.id}")
        self._g.add_node(node.id, node=node)
        return node

    def replace(self, node: Node) -> None:
        self._g.nodes[node.id]["node"] = node

    def connect(self, src: str, dst: str, kind: EdgeKind = EdgeKind.DATA, slot: int = 0) -> None:
        for end in (src, dst):
            if end not in self._g:
                raise KeyError(f"no node {end}")
        self._g.add_edge(src, dst, kind=kind, slot=slot)

    def disconnect(self, src: str, dst: str) -> None:
        self._g.remove_edge(src, dst)

    def remove(self, node_id: str) -> None:
        self._g.remove_node(node_id)

    def copy(self) -> BlockGraph:
        out = BlockGraph(self.net, self.signature)
        out._g = self._g.copy()
        return out

    def subgraph(self, ids: set[str]) -> BlockGraph:
        out = BlockGraph(self.net, self.signature)
        out._g = self._g.subgraph(ids).copy()
        return out

    # -- reading --
    def __contains__(self, node_id: str) -> bool:
        return node_id in self._g

    def __len__(self) -> int:
        return len(self._g)

    def node(self, node_id: str) -> Node:
        return self._g.nodes[node_id]["node"]

    def nodes(self) -> list[Node]:
        """Nodes in a deterministic topological order (ties broken by resolution flow, then id)."""
        order = nx.lexicographical_topological_sort(self._g, key=self._tie_key)
        return [self.node(n) for n in order]

    def _tie_key(self, node_id: str) -> tuple[int, int, str]:
        node = self.node(node_id)
        # the fade-in skip path first, so that it reads the features before the new block
        skip_first = 0 if node.role.value in ("skip", "to_rgb", "from_rgb") else 1
        flow = node.resolution if self.net == "G" else -node.resolution
        return (flow, skip_first, node_id)

    def edges(self) -> Iterator[tuple[str, str, EdgeKind]]:
        for src, dst, data in sorted(self._g.edges(data=True), key=lambda e: (e[0], e[1])):
            yield src, dst, data["kind"]

    def preds(self, node_id: str) -> list[tuple[Node, EdgeKind]]:
        """Inputs of a node with their edge kinds: data edges in slot order (so a multi-input
        kind's inputs come in call order), then the fade-in edges."""
        edges = self._g.edges
        return [
            (self.node(p), edges[p, node_id]["kind"])
            for p in sorted(
                self._g.predecessors(node_id),
                key=lambda p: (edges[p, node_id]["kind"].value, edges[p, node_id]["slot"], p),
            )
        ]

    def succs(self, node_id: str) -> list[tuple[Node, EdgeKind]]:
        return sorted(
            (
                (self.node(s), self._g.edges[node_id, s]["kind"])
                for s in self._g.successors(node_id)
            ),
            key=lambda se: (se[1].value, se[0].id),
        )

    def ancestors(self, node_id: str) -> set[str]:
        return set(nx.ancestors(self._g, node_id))

    def sources(self) -> list[Node]:
        return [self.node(n) for n in sorted(self._g) if self._g.in_degree(n) == 0]

    def sinks(self) -> list[Node]:
        return [self.node(n) for n in sorted(self._g) if self._g.out_degree(n) == 0]

    def port_node(self, port: Port) -> Node:
        assert port.node is not None, port
        return self.node(port.node)

    def port_shape(self, port: Port) -> Shape:
        """Per-sample shape of a signature port (an output's `take` range applied); () for
        alpha."""
        if port.node is None:
            return ()
        shape = self.port_node(port).out_shape or ()
        if port.take is not None:
            return (port.take[1] - port.take[0], *shape[1:])
        return shape

    def is_acyclic(self) -> bool:
        return nx.is_directed_acyclic_graph(self._g)
