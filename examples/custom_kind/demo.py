"""Compile a spec that uses a layer kind defined outside progan-dsl, and run its modules.

python -m examples.custom_kind.demo
"""

from __future__ import annotations

from pathlib import Path

import torch

import examples.custom_kind.blur  # noqa: F401  (registers the `blur` kind)
from progan_dsl.compiler import compile_spec


def main() -> None:
    program = compile_spec(Path(__file__).with_name("spec.yaml"))
    stage = program.stage(16, "fade")
    print(program.source("D", stage))
    D = program.build("D", stage)
    scores = D(torch.randn(4, 1, 16, 16), torch.tensor(0.5))
    print("D scores:", tuple(scores.shape), "params:", program.params("D", stage))


if __name__ == "__main__":
    main()
