"""Runtime module of the `blur` kind (imported by generated code)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Blur2d(nn.Module):
    def __init__(self, taps: list[int]) -> None:
        super().__init__()
        k = torch.tensor(taps, dtype=torch.float32)
        k = torch.outer(k, k)
        self.register_buffer("kernel", (k / k.sum())[None, None], persistent=False)
        n = len(taps)
        self.pad = [(n - 1) // 2, n // 2] * 2  # left, right, top, bottom: keeps H and W

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        x = F.pad(x, self.pad, mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, -1, -1), groups=c)
