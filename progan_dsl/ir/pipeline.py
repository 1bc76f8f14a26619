"""The compiler pipeline, as one readable list of named passes.

    network:  build -> fuse_scale (if on)
    stage:    select_stage -> insert_fade -> infer_shapes -> verify

Every stage is built (and so checked) at compile time: a shape that does not fit is a located
spec error before any torch code runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from progan_dsl.ir.build import build_discriminator, build_generator
from progan_dsl.ir.graph import BlockGraph
from progan_dsl.ir.passes import fuse_scale, infer_shapes, insert_fade, select_stage, verify
from progan_dsl.ir.types import Stage
from progan_dsl.kinds import get_kind
from progan_dsl.spec import LoadedSpec, Spec

NETS = ("G", "D")


def stages(spec: Spec) -> list[Stage]:
    """Growth stages in training order: base/stable, then fade and stable per resolution."""
    res = spec.architecture.resolutions
    out = [Stage(res[0], "stable")]
    for r in res[1:]:
        if spec.architecture.fade_in:
            out.append(Stage(r, "fade"))
        out.append(Stage(r, "stable"))
    return out


def param_count(graph: BlockGraph) -> int:
    return sum(get_kind(n.kind).count(n.facts()) for n in graph.nodes())


@dataclass
class CompiledGraphs:
    """Output of the IR pipeline for one spec: full network graphs and every stage graph."""

    loaded: LoadedSpec
    fused: bool
    networks: dict[str, BlockGraph]
    _stage_cache: dict[tuple[str, Stage], BlockGraph] = field(default_factory=dict)

    @property
    def spec(self) -> Spec:
        return self.loaded.spec

    @property
    def stages(self) -> list[Stage]:
        return stages(self.spec)

    def stage_graph(self, net: str, stage: Stage) -> BlockGraph:
        key = (net, stage)
        if key not in self._stage_cache:
            self._stage_cache[key] = build_stage(self.networks[net], self.spec, stage)
        return self._stage_cache[key]


def build_network(loaded: LoadedSpec, net: str, *, fused: bool) -> BlockGraph:
    graph = build_generator(loaded) if net == "G" else build_discriminator(loaded)
    if fused:
        graph = fuse_scale(graph, loaded.spec)
    return graph


def build_stage(full: BlockGraph, spec: Spec, stage: Stage) -> BlockGraph:
    graph = select_stage(full, spec, stage)
    graph = insert_fade(graph, full, spec, stage)
    graph = infer_shapes(graph, spec)
    return verify(graph)


def compile_graphs(loaded: LoadedSpec, *, fused: bool | None = None) -> CompiledGraphs:
    """Run the network passes for G and D. `fused` defaults to the spec's `fused_scale`."""
    use_fused = loaded.spec.architecture.fused_scale if fused is None else fused
    networks = {net: build_network(loaded, net, fused=use_fused) for net in NETS}
    compiled = CompiledGraphs(loaded=loaded, fused=use_fused, networks=networks)
    for stage in compiled.stages:
        for net in NETS:
            compiled.stage_graph(net, stage)
    return compiled
