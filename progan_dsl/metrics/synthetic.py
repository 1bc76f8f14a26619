"""Synthetic image sets whose relations are known, for checking the metrics and benchmarking them.

Owns three seeded generators of uint8 [N, C, H, W] batches: smooth random colour textures (a
stand-in for a real dataset: structure at coarse and fine scales), a blurred copy of a batch
(loses fine detail, keeps the coarse structure) and uniform noise (no structure at all). A metric
should rank "textures vs other textures" < "textures vs blurred textures" < "textures vs noise".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def textures(num: int, size: int, *, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Random textures: bilinearly upsampled coarse noise (80%) plus per-pixel detail (20%)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num, channels, max(size // 4, 1), max(size // 4, 1), generator=generator)
    fine = torch.rand(num, channels, size, size, generator=generator)
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return ((0.8 * smooth + 0.2 * fine) * 255).round().to(torch.uint8)


def blurred(images: torch.Tensor) -> torch.Tensor:
    """Each image blurred by the 3x3 binomial filter [1, 2, 1]^2 / 16, mirror borders."""
    c = images.shape[1]
    taps = torch.tensor([1.0, 2.0, 1.0])
    kernel = (torch.outer(taps, taps) / 16).expand(c, 1, 3, 3)
    padded = F.pad(images.float(), (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernel, groups=c).round().to(torch.uint8)


def uniform_noise(num: int, size: int, *, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Independent uniform pixels in 0..255."""
    generator = torch.Generator().manual_seed(seed)
    shape = (num, channels, size, size)
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
