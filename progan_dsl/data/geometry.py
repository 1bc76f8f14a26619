"""Level geometry and the 2x2 box filter: which image shape each resolution has, and how one
level is computed from the level above.

A dataset has a *base shape* (the paper's 4x4; 4x8 for landscape data) and a top *resolution*,
the longer side of the largest image. Each level doubles both sides of the one below, so the
levels of a 4x8 dataset at resolution 32 are 4x8, 8x16 and 16x32. Levels are named by their
longer side ("resolution"), matching the generator's blocks.

Downsampling rule (the one written in the manifest, `DOWNSAMPLE_RULE`), that of the official
dataset tool (tkarras/progressive_growing_of_gans dataset_tool.py, `TFRecordExporter.add_image`):
each level is the float32 mean of each 2x2 block of the *unrounded* float level above,
`(x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]) * 0.25`, starting from the top
level, and is stored as `rint(x).clip(0, 255)` in uint8 (round half to even). The float values
are exact (multiples of 4^-k below 256 need at most 8 + 2k bits: exact in float32 down to 8
halvings, 1024 -> 4), so level k is also the rounded mean of each 2^k x 2^k block of the top.
Datasets made before this rule averaged the stored, rounded level above (their manifests say
so); they stay readable, and their levels differ from these by at most one grey level.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from progan_dsl.errors import UserError

DOWNSAMPLE_RULE = (
    "level k = rint(x_k).clip(0, 255) as uint8, x_top = the top level, x_k = float32 mean of each "
    "2x2 block of the unrounded x_(k+1), (a + b + c + d) * 0.25 (official dataset_tool.py); "
    "rint = round half to even"
)


def parse_shape(text: str) -> tuple[int, int]:
    """Parse "HxW" (e.g. "4x4", "4x8") into (H, W); a UserError names what is allowed."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"base shape {text!r} is not of the form HxW (e.g. 4x4 or 4x8)")
    height, width = (int(p) for p in parts)
    if height < 1 or width < 1:
        raise UserError(f"base shape {text!r} must have positive sides")
    return height, width


@dataclass(frozen=True)
class Geometry:
    """The shapes of every level, from the base shape up to the top resolution."""

    base_shape: tuple[int, int]  # (H, W) of the smallest level
    resolution: int  # longer side of the largest level

    def __post_init__(self) -> None:
        base = max(self.base_shape)
        ratio = self.resolution // base
        if self.resolution < base or ratio * base != self.resolution or ratio & (ratio - 1):
            allowed = ", ".join(str(base << k) for k in range(9))
            raise UserError(
                f"resolution {self.resolution} is not the base shape "
                f"{self.base_shape[0]}x{self.base_shape[1]} doubled a whole number of times; "
                f"allowed: {allowed}, ..."
            )

    @property
    def resolutions(self) -> list[int]:
        """Longer sides of all levels, ascending (e.g. [4, 8, 16, 32])."""
        out = [max(self.base_shape)]
        while out[-1] < self.resolution:
            out.append(out[-1] * 2)
        return out

    def shape(self, resolution: int) -> tuple[int, int]:
        """(H, W) of the level whose longer side is `resolution`."""
        scale = resolution // max(self.base_shape)
        return self.base_shape[0] * scale, self.base_shape[1] * scale


def box_mean(images: np.ndarray) -> np.ndarray:
    """[N, C, H, W] (uint8 or float32) -> float32 [N, C, H/2, W/2], the mean of each 2x2 block
    computed as the official dataset tool does: ((a + b) + c) + d, then times 0.25, in float32."""
    x = images.astype(np.float32, copy=False)
    total = x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]
    return total * np.float32(0.25)


def quantise(levels: np.ndarray) -> np.ndarray:
    """Float level -> stored uint8: `rint(x).clip(0, 255)` (round half to even), as the official
    dataset tool stores it."""
    return np.rint(levels).clip(0, 255).astype(np.uint8)


def pyramid(top: np.ndarray, count: int) -> Iterator[np.ndarray]:
    """The stored uint8 levels of a block of top-level images [N, C, H, W] uint8, top first,
    `count` levels in all, by `DOWNSAMPLE_RULE` (each level from the unrounded one above)."""
    level: np.ndarray = top
    for k in range(count):
        if k:
            level = box_mean(level)
        yield level if k == 0 else quantise(level)
