"""Code generation: block graph of one stage -> readable, standalone PyTorch source.

`view.py` turns a stage graph into a plain view model (all decisions, no text layout);
`templates/*.j2` only lay it out; `render.py` runs jinja2 (StrictUndefined); `load.py` executes
generated source in-process (registered with linecache so tracebacks show generated lines);
`emit.py` writes a folder that imports with nothing but torch.
"""

from progan_dsl.codegen.emit import emit_package
from progan_dsl.codegen.load import load_class
from progan_dsl.codegen.render import render_stage
from progan_dsl.codegen.view import ModuleView, class_name, module_view

__all__ = ["ModuleView", "class_name", "emit_package", "load_class", "module_view", "render_stage"]
