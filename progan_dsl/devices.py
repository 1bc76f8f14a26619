"""Which device a command runs on: one vocabulary and one default for every CLI.

`--device` takes `cpu`, `cuda` or `cuda:<index>`; without it, commands use CUDA when torch sees a
GPU and the CPU otherwise. `parse_device` only reads the text (torch-free, so onnxruntime code can
use it); `torch_device` also checks that a requested GPU exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from progan_dsl.errors import UserError

if TYPE_CHECKING:
    import torch



def parse_device(text: str) -> tuple[str, int]:
    """'cpu' -> ('cpu', 0); 'cuda' -> ('cuda', 0); 'cuda:1' -> ('cuda', 1)."""
    kind, sep, index = text.strip().partition(":")
    if kind not in ("cpu", "cuda") or (sep and not index.isdigit()) or (kind == "cpu" and sep):
        raise UserError(f"--device must be cpu, cuda or cuda:<index>, got {text!r}")
    return kind, int(index or 0)


def torch_device(text: str | None = None) -> torch.device:
    """The torch device for `--device` (None: CUDA when available). `UserError` for a GPU that
    is not there."""
    import torch

    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, index = parse_device(text)
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--device {text}: no CUDA GPU is available here (use --device cpu)")
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def device_text(device: torch.device) -> str:
    """The `--device` spelling of a torch device ('cpu', 'cuda:0')."""
    return "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"


__all__ = ["device_text", "parse_device", "torch_device"]
