"""Gaussian and Laplacian image pyramids with the 5x5 binomial filter, as SWD uses them.

Owns the filter, one pyramid step down and up (`pyr_down`, `pyr_up`, the semantics of OpenCV's
`cv2.pyrDown` / `cv2.pyrUp` that the official ProGAN code reproduces with
`scipy.ndimage.convolve(..., mode="mirror")`), building and inverting a Laplacian pyramid, and the
rule for which resolutions the SWD pyramid covers. Everything works on float tensors
`[N, C, H, W]` on any device; nothing here is random.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# 1-D taps of the binomial filter. Their outer product / 256 is the official 5x5 `gaussian_filter`
# (tkarras/progressive_growing_of_gans, metrics/sliced_wasserstein.py; paper Section 5).
BINOMIAL_TAPS: tuple[float, ...] = (1.0, 4.0, 6.0, 4.0, 1.0)

# The SWD pyramid stops at 16x16 (official `API.__init__`: `while res >= 16`).
SWD_MIN_RESOLUTION = 16

_PAD = len(BINOMIAL_TAPS) // 2


def binomial_filter_2d() -> torch.Tensor:
    """The 5x5 binomial filter `outer([1,4,6,4,1]) / 256` (sums to 1)."""
    taps = torch.tensor(BINOMIAL_TAPS, dtype=torch.float64)
    return torch.outer(taps, taps) / taps.sum() ** 2


def _filter_axis(x: torch.Tensor, dim: int, weights: list[float], stride: int) -> torch.Tensor:
    """Valid 1-D filtering of `x` along `dim` with `weights`, keeping every `stride`-th output.

    A weighted sum of shifted slices: on the CPU about 3x faster than a depthwise conv2d.
    """
    length = (x.shape[dim] - len(weights)) // stride + 1
    index: list[slice] = [slice(None)] * x.ndim
    out = torch.zeros((), dtype=x.dtype, device=x.device)
    for offset, weight in enumerate(weights):
        index[dim] = slice(offset, offset + (length - 1) * stride + 1, stride)
        out = out + x[tuple(index)] * weight
    return out


def _blur(x: torch.Tensor, gain: float, stride: int) -> torch.Tensor:
    """Separable binomial blur with mirror borders, scaled by `gain`, keeping every
    `stride`-th pixel.

    Mirror (`d c b | a b c d | c b a`, scipy "mirror", torch "reflect") is the border of both the
    official code and OpenCV's BORDER_REFLECT_101. Filtering the padded image with a stride equals
    blurring at full resolution and then taking pixels 0, 2, 4, ... as the official
    `[:, :, ::2, ::2]`.
    """
    h, w = x.shape[-2:]
    if h <= _PAD or w <= _PAD:
        raise ValueError(f"pyramid step needs images larger than {_PAD}x{_PAD}, got {h}x{w}")
    scale = gain**0.5 / sum(BINOMIAL_TAPS)  # half of the gain per axis
    weights = [tap * scale for tap in BINOMIAL_TAPS]
    x = F.pad(x, (_PAD, _PAD, _PAD, _PAD), mode="reflect")
    x = _filter_axis(x, -1, weights, stride)
    return _filter_axis(x, -2, weights, stride)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Blur with the binomial filter, then keep every second pixel:
    [N, C, H, W] -> [N, C, H/2, W/2]."""
    return _blur(x, gain=1.0, stride=2)


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """Insert zeros between pixels, then blur with 4x the filter: [N, C, H, W] -> [N, C, 2H, 2W].

    The factor 4 restores the brightness lost to the three zeros in every 2x2 block.
    """
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, gain=4.0, stride=1)


def _check_divisible(x: torch.Tensor, num_levels: int) -> None:
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    factor = 2 ** (num_levels - 1)
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(
            f"{num_levels} pyramid levels need sizes divisible by {factor}, got {h}x{w}"
        )


def laplacian_pyramid(x: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid, finest level first: band-pass levels, then the Gaussian low-pass residual.

    Level i has size H/2^i. For i < num_levels-1 it is `G_i - pyr_up(G_{i+1})` with
    `G_{i+1} = pyr_down(G_i)`; the last level is the Gaussian level itself, so the pyramid is
    exactly invertible (`reconstruct_laplacian_pyramid`).
    """
    _check_divisible(x, num_levels)
    gaussian = x.float() if not x.is_floating_point() else x
    levels: list[torch.Tensor] = []
    for _ in range(num_levels - 1):
        smaller = pyr_down(gaussian)
        levels.append(gaussian - pyr_up(smaller))
        gaussian = smaller
    levels.append(gaussian)
    return levels


def laplacian_level(x: torch.Tensor, level: int, num_levels: int) -> torch.Tensor:
    """Level `level` of `laplacian_pyramid(x, num_levels)` without keeping the other levels.

    SWD processes one level at a time so that only one level's descriptors are in memory.
    """
    _check_divisible(x, num_levels)
    if not 0 <= level < num_levels:
        raise ValueError(f"level must be in [0, {num_levels}), got {level}")
    gaussian = x.float() if not x.is_floating_point() else x
    for _ in range(level):
        gaussian = pyr_down(gaussian)
    if level == num_levels - 1:
        return gaussian
    return gaussian - pyr_up(pyr_down(gaussian))


def reconstruct_laplacian_pyramid(levels: list[torch.Tensor]) -> torch.Tensor:
    """Invert `laplacian_pyramid`: upsample from the coarsest level, adding each band back."""
    image = levels[-1]
    for band in reversed(levels[:-1]):
        image = pyr_up(image) + band
    return image


def swd_resolutions(size: int, min_resolution: int = SWD_MIN_RESOLUTION) -> list[int]:
    """Resolutions of the SWD pyramid for `size`x`size` images: size, size/2, ... down to
    min_resolution.

    Images smaller than `min_resolution` keep one level, the image itself (the official code would
    have no level at all there).
    """
    resolutions = [size]
    while resolutions[-1] % 2 == 0 and resolutions[-1] // 2 >= min_resolution:
        resolutions.append(resolutions[-1] // 2)
    return resolutions
