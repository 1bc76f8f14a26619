"""The compiler pipeline, as one readable list of named passes.

    network:  build -> fuse_scale (if on)
    stage:    select_stage -> insert_fade -> infer_shapes -> verify

Every stage is built (and so checked) at compile time: a shape that does not fit is a located
spec error before any torch code runs. `select_stages` is the one way a caller (a `--stage`
option, an export, a diagram) picks stages by resolution and phase, with one error text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from progan_dsl.errors import UserError
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


PHASES = ("fade", "stable")


def select_stages(
    stages: Sequence[Stage],
    resolution: int | str | None,
    phase: str | None = None,
    *,
    spec_name: str = "",
) -> list[Stage]:
    """The stages at `resolution` (an int, a numeric string, or None / 'all' for every one) and
    `phase` (None for both), in training order. Raises one `UserError` text for every caller:
    `no stage 32/fade in spec 'tiny' (stages: 4/stable, 8/fade, 8/stable, ...)`."""
    resolutions = sorted({s.resolution for s in stages})
    spec = f" in spec '{spec_name}'" if spec_name else ""
    res: int | None
    if resolution is None or resolution == "all":
        res = None
    elif isinstance(resolution, str) and resolution.strip().isdigit():
        res = int(resolution.strip())
    elif isinstance(resolution, int) and not isinstance(resolution, bool):
        res = resolution
    else:
        raise UserError(
            f"expected a resolution or 'all', got {resolution!r} (resolutions{spec}: "
            f"{', '.join(map(str, resolutions))})"
        )
    if phase is not None and phase not in PHASES:
        raise UserError(f"unknown phase {phase!r} (phases: {', '.join(PHASES)})")
    chosen = [
        s
        for s in stages
        if (res is None or s.resolution == res) and (phase is None or s.phase == phase)
    ]
    if not chosen:
        what = "/".join(str(p) for p in (res, phase) if p is not None)
        raise UserError(f"no stage {what}{spec} (stages: {', '.join(map(str, stages))})")
    return chosen


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
    """select_stage -> insert_fade -> infer_shapes (which also checks each block's output)
    -> verify."""
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
