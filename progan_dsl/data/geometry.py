"""Level geometry and the 2x2 box filter: which image shape each resolution has, and how one
level is computed from the level above.

A dataset has a *base shape* (the paper's 4x4; 4x8 for landscape data) and a top *resolution*,
the longer side of the largest image. Each level doubles both sides of the one below, so the
levels of a 4x8 dataset at resolution 32 are 4x8, 8x16 and 16x32. Levels are named by their
longer side ("resolution"), matching the generator's blocks.

Downsampling rule (the one written in the manifest): level k is computed from the *stored uint8*
level k+1 as the mean of each 2x2 block in float32 (exact: the sum of four uint8 values and a
quarter of it are representable), then rounded half to even (`np.rint`) and cast to uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from progan_dsl.errors import UserError

DOWNSAMPLE_RULE = (
    "level k = rint(mean of each 2x2 block of the stored uint8 level k+1), mean in float32 "
    "(exact), rint = round half to even; computed level by level from the level above"
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


def box_downsample(images: np.ndarray) -> np.ndarray:
    """[N, C, H, W] uint8 -> [N, C, H/2, W/2] uint8 by the rule in `DOWNSAMPLE_RULE`."""
    x = images.astype(np.float32)
    total = x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]
    return np.rint(total * np.float32(0.25)).astype(np.uint8)
