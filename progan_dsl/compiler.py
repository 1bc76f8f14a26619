"""The compiler facade: spec file -> `Program` (graphs of every stage + generated modules).

Training, export and `--emit-source` all get their modules here, from the one codegen path.

One calling convention, stated by each network's `Signature` (`Program.signature`): every stage
of a network takes the same arguments in the same order, alpha last (fade stages use it, stable
ones accept and ignore it), so callers bind arguments by role (`Signature.args`) and read results
by role (`Signature.results`) and never branch on the phase or on what the spec conditions on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from progan_dsl.codegen import class_name, load_class, module_view, render_stage
from progan_dsl.ir import BlockGraph, CompiledGraphs, Stage, compile_graphs, param_count
from progan_dsl.ir.pipeline import select_stages
from progan_dsl.ir.types import Signature
from progan_dsl.spec import LoadedSpec, Spec, load_spec

if TYPE_CHECKING:
    from torch import nn


@dataclass
class Program:
    """A compiled spec. Sources and classes are generated on first use and cached."""

    graphs: CompiledGraphs
    _sources: dict[tuple[str, Stage], str] = field(default_factory=dict)
    _classes: dict[tuple[str, Stage], Any] = field(default_factory=dict)

    @property
    def loaded(self) -> LoadedSpec:
        return self.graphs.loaded

    @property
    def spec(self) -> Spec:
        return self.graphs.spec

    @property
    def stages(self) -> list[Stage]:
        return self.graphs.stages

    @property
    def fused(self) -> bool:
        return self.graphs.fused

    def stage(self, resolution: int, phase: str = "stable") -> Stage:
        """The stage at (resolution, phase); the one stage-selection error otherwise."""
        return select_stages(self.stages, resolution, phase, spec_name=self.spec.name)[0]

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]

    def graph(self, net: str, stage: Stage) -> BlockGraph:
        return self.graphs.stage_graph(net, stage)

    def signature(self, net: str, stage: Stage | None = None) -> Signature:
        """What the network takes and gives (the same at every stage; shapes differ)."""
        return self.graph(net, stage or self.final_stage).signature

    @property
    def num_classes(self) -> int:
        """Classes of a conditional spec, 0 for an unconditional one."""
        return self.spec.architecture.num_classes

    def params(self, net: str, stage: Stage) -> int:
        return param_count(self.graph(net, stage))

    def source(self, net: str, stage: Stage) -> str:
        key = (net, stage)
        if key not in self._sources:
            view = module_view(
                self.graph(net, stage),
                stage,
                spec_name=self.spec.name,
                spec_hash=self.loaded.hash,
                fused=self.fused,
            )
            self._sources[key] = render_stage(view)
        return self._sources[key]

    def module_class(self, net: str, stage: Stage) -> type[nn.Module]:
        key = (net, stage)
        if key not in self._classes:
            tag = "fused" if self.fused else "plain"
            filename = f"<progan:{self.spec.name}:{self.loaded.hash[:8]}:{tag}:{net}_{stage.name}>"
            cls = load_class(self.source(net, stage), filename, class_name(net, stage))
            self._classes[key] = cls
        return self._classes[key]

    def build(self, net: str, stage: Stage) -> nn.Module:
        """A fresh module of this network and stage (weights initialised N(0, 1), biases 0)."""
        return self.module_class(net, stage)()


def compile_spec(
    spec: str | Path | LoadedSpec, *, fused: bool | None = None, overrides: Sequence[str] = ()
) -> Program:
    """Compile a spec file (with `--set` style `overrides`) or an already loaded spec."""
    if isinstance(spec, LoadedSpec):
        if overrides:
            raise ValueError("overrides apply when loading: pass the spec path")
        loaded = spec
    else:
        loaded = load_spec(spec, overrides=overrides)
    return Program(graphs=compile_graphs(loaded, fused=fused))
