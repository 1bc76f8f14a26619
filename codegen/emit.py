"""Write generated modules as a standalone Python package (needs only torch to import)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from progan_dsl.codegen.render import render_stage, render_template
from progan_dsl.codegen.view import class_name, module_view
from progan_dsl.fsutil import replace_dir
from progan_dsl.ir import CompiledGraphs

RELATIVE_RUNTIME = "from . import layers as L"


def module_file(net: str, resolution: int, phase: str) -> str:
    return f"{net.lower()}_{resolution:04d}_{phase}"


def emit_package(graphs: CompiledGraphs, out_dir: str | Path) -> list[Path]:
    """Write `out_dir/` with `layers.py` (the runtime), one module per network and stage, and an
    `__init__.py` listing them. Written to a temporary sibling and renamed into place."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        import progan_dsl.nn.gradfix as gradfix
        import progan_dsl.nn.layers as runtime

        shutil.copyfile(runtime.__file__, tmp / "layers.py")
        shutil.copyfile(gradfix.__file__, tmp / "gradfix.py")
        entries = []
        spec = graphs.loaded
        for stage in graphs.stages:
            for net in ("G", "D"):
                view = module_view(graphs.stage_graph(net, stage), stage, spec_name=spec.spec.name,
                                   spec_hash=spec.hash, fused=graphs.fused,
                                   runtime_import=RELATIVE_RUNTIME)
                name = module_file(net, stage.resolution, stage.phase)
                (tmp / f"{name}.py").write_text(render_stage(view))
                entries.append({"module": name, "class_name": class_name(net, stage), "net": net,
                                "resolution": stage.resolution, "phase": stage.phase})
        (tmp / "__init__.py").write_text(render_template(
            "package_init.py.j2", stages=entries, spec_name=spec.spec.name, spec_hash=spec.hash))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out.iterdir())
