"""progan-dsl: Progressive Growing GANs as declarative YAML specs, compiled like a program.

Data flows one way: spec -> ir -> codegen -> (train | export | render). The three-line API:

    from progan_dsl import Checkpoint, compile_spec, load_spec
    program = compile_spec(load_spec("specs/mnist_32.yaml"))      # every stage's G and D
    G = Checkpoint.load("runs/00000-mnist_32").generator()       # the trained EMA generator

Names are imported on first use, so `import progan_dsl` stays cheap.
"""

from progan_dsl.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Checkpoint": "progan_dsl.checkpoint",
    "Program": "progan_dsl.compiler",
    "compile_spec": "progan_dsl.compiler",
    "load_spec": "progan_dsl.spec",
    "open_sampler": "progan_dsl.generate",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
