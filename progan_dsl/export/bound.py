"""What an export traces: the stable generator bound to the exported inputs by role.

Owns `ExportedGenerator`, the one wrapper the ONNX and AOTInductor exports trace. Its forward
takes the exported file's inputs in the order `exported_ports(signature)` lists them (`z`, then
`labels` for a class-conditional G), binds them to G's arguments by role (`Signature.args`; a
stable stage's alpha stays at its default) and returns the image by role
(`Signature.results`). A low-precision copy casts the inputs on entry and the images back to
float32 on exit, so every export keeps float32 input and output whatever its precision.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from progan_dsl.generate.meta import exported_ports
from progan_dsl.ir.types import PortRole, Signature

PARAMETER_PREFIX = "g."  # the wrapped generator's attribute: its parameters are "g.<name>"


class ExportedGenerator(nn.Module):
    """A copy of the stable generator `G` (in `dtype`, eval mode, no grads) called with the
    exported inputs in order; returns float32 images [N, C, H, W]."""

    def __init__(self, G: nn.Module, signature: Signature, dtype: torch.dtype) -> None:
        super().__init__()
        self.g = copy.deepcopy(G).to(dtype).eval().requires_grad_(False)
        self.dtype = dtype
        self.signature = signature
        self.roles = tuple(port.role for port in exported_ports(signature))
        self.eval()

    def forward(self, *inputs: Tensor) -> Tensor:
        values = {role: x.to(self.dtype) for role, x in zip(self.roles, inputs, strict=True)}
        result = self.g(*self.signature.args(values))
        return self.signature.results(result)[PortRole.IMAGE].to(torch.float32)


def example_inputs(
    signature: Signature, latent_size: int, num_classes: int, batch: int, device: str = "cpu"
) -> tuple[Tensor, ...]:
    """Example inputs of an export, in the exported order: zero latents, one-hot labels."""
    shapes = {PortRole.LATENT: latent_size, PortRole.LABELS: num_classes}
    out = []
    for port in exported_ports(signature):
        if port.role == PortRole.LABELS:
            index = torch.arange(batch, device=device) % num_classes
            out.append(torch.nn.functional.one_hot(index, num_classes).to(torch.float32))
        else:
            out.append(torch.zeros(batch, shapes[port.role], device=device))
    return tuple(out)


__all__ = ["PARAMETER_PREFIX", "ExportedGenerator", "example_inputs"]
