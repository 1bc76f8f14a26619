"""Write generated modules as a standalone Python package (needs only torch to import).

The folder follows the output-folder rule of `fsutil.plan_output_dir`: a missing or empty folder
is written; a non-empty one only with `force`, and only if it holds an earlier emission (its
`.progan-output.json` marker, kind `EMIT_KIND`) and nothing else (Python's `__pycache__`
aside); a file at the target is an error. The package is built beside the target and published
in one kill-safe step (`fsutil.staged_dir`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from progan_dsl.codegen.render import render_stage, render_template
from progan_dsl.codegen.view import call_text, class_name, module_view
from progan_dsl.fsutil import MARKER_NAME, plan_output_dir, staged_dir, translate_write_errors
from progan_dsl.ir import CompiledGraphs

RELATIVE_RUNTIME = "from . import layers as L"
EMIT_KIND = "progan-compile --emit-source"  # the marker's kind: what --force may replace


def module_file(net: str, resolution: int, phase: str) -> str:
    return f"{net.lower()}_{resolution:04d}_{phase}"


def emit_package(graphs: CompiledGraphs, out_dir: str | Path, *, force: bool = False) -> list[Path]:
    """Write `out_dir/` with `layers.py` (the runtime), one module per network and stage, and an
    `__init__.py` listing them (see the module docstring for what may be replaced); return the
    files written. UserError for a target that may not be written or a full/read-only disk."""
    plan = plan_output_dir(out_dir, kind=EMIT_KIND, force=force)
    with translate_write_errors(plan.path, "the partial package was removed"):
        with staged_dir(plan) as tmp:
            _write_package(graphs, tmp)
    return sorted(p for p in plan.path.iterdir() if p.name != MARKER_NAME)


def _write_package(graphs: CompiledGraphs, folder: Path) -> None:
    import progan_dsl.nn.gradfix as gradfix
    import progan_dsl.nn.layers as runtime

    shutil.copyfile(runtime.__file__, folder / "layers.py")
    shutil.copyfile(gradfix.__file__, folder / "gradfix.py")
    entries = []
    spec = graphs.loaded
    for stage in graphs.stages:
        for net in ("G", "D"):
            view = module_view(
                graphs.stage_graph(net, stage),
                stage,
                spec_name=spec.spec.name,
                spec_hash=spec.hash,
                fused=graphs.fused,
                runtime_import=RELATIVE_RUNTIME,
            )
            name = module_file(net, stage.resolution, stage.phase)
            (folder / f"{name}.py").write_text(render_stage(view))
            entries.append(
                {
                    "module": name,
                    "class_name": class_name(net, stage),
                    "net": net,
                    "resolution": stage.resolution,
                    "phase": stage.phase,
                }
            )
    (folder / "__init__.py").write_text(
        render_template(
            "package_init.py.j2",
            stages=entries,
            spec_name=spec.spec.name,
            spec_hash=spec.hash,
            g_call=call_text(graphs.stage_graph("G", graphs.stages[-1])),
            d_call=call_text(graphs.stage_graph("D", graphs.stages[-1])),
        )
    )
