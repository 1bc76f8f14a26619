"""progan-dsl: Progressive Growing GANs as declarative YAML specs, compiled like a program.

Data flows one way: spec -> ir -> codegen -> (train | export | render).
"""

__version__ = "0.1.0"
