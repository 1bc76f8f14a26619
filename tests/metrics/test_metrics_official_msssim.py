"""MS-SSIM against an independent float64 NumPy/SciPy computation of the official definition
(tkarras/progressive_growing_of_gans, metrics/ms_ssim.py), written here from its formulas, at every
size: the official five scales for sides that are multiples of 16 (16 ... 256 and 48), the
official function with renormalised weights below 16, and the floor-halving variant for other
sides. Plus closed forms: identical images, constant images, a checkerboard against a constant.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from progan_dsl.metrics.msssim import ms_ssim, msssim_scales
from progan_dsl.metrics.synthetic import textures

signal = pytest.importorskip("scipy.signal")

# Official constants (metrics/ms_ssim.py defaults), restated so the reference stands alone.
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
# Measured: float32 project vs this float64 reference, at most 1.2e-7 relative over these cases
# (the official code as run with SciPy 1.17, float32 FFTs: within 2e-6 of both). Issue #14's bar.
RTOL = 1e-4


# ---- the reference ---------------------------------------------------------------------------


def fspecial_gauss(size: int, sigma: float) -> np.ndarray:
    """MATLAB fspecial('gaussian'): grid -r..r for odd sizes, -r+0.5..r-0.5 for even ones."""
    radius = size // 2
    coords = np.arange(-radius, radius + 1.0) if size % 2 else np.arange(-radius, radius) + 0.5
    g = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2.0 * sigma**2))
    return g / g.sum()


def ssim_and_cs(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure of one [H, W, C] pair at one scale: window side
    min(11, H, W), sigma 1.5 * side / 11, 'valid' filtering of every channel."""
    size = min(11, x.shape[0], x.shape[1])
    window = fspecial_gauss(size, size * 1.5 / 11)

    def filt(z: np.ndarray) -> np.ndarray:
        return np.stack(
            [signal.convolve2d(z[:, :, c], window, mode="valid") for c in range(z.shape[2])], -1
        )

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    cs = (2 * cov + C2) / (var_x + var_y + C2)
    ssim = (2 * mu_x * mu_y + C1) / (mu_x**2 + mu_y**2 + C1) * cs
    return float(ssim.mean()), float(cs.mean())


def halve(x: np.ndarray, crop_odd: bool) -> np.ndarray:
    """The official 2x2 average (exact for even sides); `crop_odd` drops a last odd row/column."""
    if crop_odd:
        x = x[: x.shape[0] // 2 * 2, : x.shape[1] // 2 * 2]
    assert x.shape[0] % 2 == 0 and x.shape[1] % 2 == 0, "the official average needs even sides"
    return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) * 0.25


def reference_msssim(
    a: np.ndarray, b: np.ndarray, weights: tuple[float, ...] = WEIGHTS, crop_odd: bool = False
) -> float:
    """Official MS-SSIM of one [C, H, W] pair, float64: one scale per weight; contrast-structure
    of all scales but the last, SSIM of the last, clipped at 0, weighted product."""
    x = np.moveaxis(a.astype(np.float64), 0, -1)
    y = np.moveaxis(b.astype(np.float64), 0, -1)
    factors = []
    for scale in range(len(weights)):
        ssim, cs = ssim_and_cs(x, y)
        factors.append(ssim if scale == len(weights) - 1 else cs)
        if scale < len(weights) - 1:
            x, y = halve(x, crop_odd), halve(y, crop_odd)
    return float(np.prod(np.maximum(factors, 0.0) ** np.asarray(weights)))


def renormalised(count: int) -> tuple[float, ...]:
    return tuple(w / sum(WEIGHTS[:count]) for w in WEIGHTS[:count])


def related_pairs(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four pairs a texture vs a noisier copy (MS-SSIM about 0.3 to 0.99), one per noise level,
    and a bright low-contrast pair (where float32 cancellation would show)."""
    generator = torch.Generator().manual_seed(seed)
    base = textures(4, size, seed=seed).float()
    sigma = torch.tensor([4.0, 15.0, 40.0, 80.0]).view(4, 1, 1, 1)
    noisy = (base + sigma * torch.randn(base.shape, generator=generator)).clamp(0, 255).round()
    bright = 240 + torch.randint(0, 12, (2, 3, size, size), generator=generator).float()
    return torch.cat([base, bright[:1]]), torch.cat([noisy, bright[1:]])


def _check(size: int, weights: tuple[float, ...], crop_odd: bool = False) -> None:
    a, b = related_pairs(size, seed=size)
    got = ms_ssim(a.to(torch.uint8), b.to(torch.uint8)).numpy()
    expected = [
        reference_msssim(a[i].numpy(), b[i].numpy(), weights, crop_odd) for i in range(a.shape[0])
    ]
    assert min(expected) > 0.05  # clipping inactive: the comparison is meaningful
    np.testing.assert_allclose(got, expected, rtol=RTOL)


# ---- agreement at every size -----------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 48, 64, 128, 256])
def test_official_sizes_match_the_official_definition(size: int) -> None:
    plan = msssim_scales(size, size)
    assert plan.official and plan.note == "" and plan.weights == WEIGHTS
    _check(size, WEIGHTS)


@pytest.mark.parametrize(("size", "count"), [(1, 1), (2, 2), (4, 3), (8, 4)])
def test_small_sizes_match_the_official_function_with_renormalised_weights(
    size: int, count: int
) -> None:
    plan = msssim_scales(size, size)
    assert (plan.official, plan.count) == (False, count)
    assert plan.weights == pytest.approx(renormalised(count), rel=1e-15)
    _check(size, renormalised(count))


@pytest.mark.parametrize("size", [24, 40])
def test_other_sides_halve_by_dropping_the_odd_row(size: int) -> None:
    plan = msssim_scales(size, size)
    assert not plan.official and plan.count == 5
    _check(size, WEIGHTS, crop_odd=True)


def test_non_square_official_images() -> None:
    a, b = related_pairs(64, seed=1)
    a, b = a[:, :, :32], b[:, :, :32]  # 32x64
    assert msssim_scales(32, 64).official
    got = ms_ssim(a.to(torch.uint8), b.to(torch.uint8)).numpy()
    expected = [reference_msssim(a[i].numpy(), b[i].numpy()) for i in range(a.shape[0])]
    np.testing.assert_allclose(got, expected, rtol=RTOL)


# ---- closed forms ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 4, 8, 16, 24, 64, 256])
def test_identical_images_give_exactly_one(size: int) -> None:
    a, b = related_pairs(size, seed=3)
    assert torch.equal(ms_ssim(a, a.clone()), torch.ones(a.shape[0], dtype=torch.float64))
    weights = renormalised(msssim_scales(size, size).count)
    assert reference_msssim(b[0].numpy(), b[0].numpy(), weights, crop_odd=True) == 1.0


def _luminance(p: float, q: float) -> float:
    return (2 * p * q + C1) / (p * p + q * q + C1)


@pytest.mark.parametrize(
    ("size", "last_weight"), [(64, 0.1333), (16, 0.1333), (4, 0.3001 / 0.6305)]
)
def test_constant_images(size: int, last_weight: float) -> None:
    # No variance anywhere: every contrast-structure term is C2 / C2 = 1 and only the luminance
    # of the last scale remains, raised to its weight (renormalised below 16 pixels).
    a = torch.full((1, 3, size, size), 100, dtype=torch.uint8)
    b = torch.full((1, 3, size, size), 150, dtype=torch.uint8)
    expected = _luminance(100, 150) ** last_weight
    # By hand: (2*100*150 + 6.5025) / (100^2 + 150^2 + 6.5025) = 30006.5025 / 32506.5025.
    assert _luminance(100, 150) == pytest.approx(0.923092, abs=1e-6)
    assert ms_ssim(a, b).item() == pytest.approx(expected, rel=1e-6)


def _alternating_sum(window: int) -> float:
    """s = sum_u (-1)^u t_u of the normalised 1-D Gaussian taps of a window of this side."""
    sigma = 1.5 * window / 11
    coords = [u - (window - 1) / 2 for u in range(window)]
    taps = [math.exp(-(x * x) / (2 * sigma * sigma)) for x in coords]
    return sum((-1) ** u * t for u, t in enumerate(taps)) / sum(taps)


@pytest.mark.parametrize(
    ("size", "first_weight", "last_weight"),
    [(16, 0.0448, 0.1333), (128, 0.0448, 0.1333), (8, 0.0448 / 0.8668, 0.2363 / 0.8668)],
)
def test_checkerboard_against_a_constant(
    size: int, first_weight: float, last_weight: float
) -> None:
    # b: a one-pixel checkerboard of 0 and 255; a: constant 100. At the first scale every window
    # puts weight p = (1 -+ s^2) / 2 on the 255 pixels (s the alternating tap sum, the window
    # separable), so var_b = 255^2 p (1 - p) = 255^2 (1 - s^4) / 4 at every position, var_a =
    # cov = 0 and cs = C2 / (var_b + C2). The 2x2 average makes b constant 127.5: every later cs
    # is 1, and the last scale adds the luminance of 100 against 127.5.
    a = torch.full((1, 1, size, size), 100, dtype=torch.uint8)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    b = (((rows + cols) % 2) * 255).to(torch.uint8)[None, None]
    s = _alternating_sum(min(11, size))
    cs1 = C2 / (255**2 * (1 - s**4) / 4 + C2)
    expected = cs1**first_weight * _luminance(100, 127.5) ** last_weight
    assert cs1 == pytest.approx(0.0035869, rel=1e-4)  # 58.5225 / (16256.25 + 58.5225)
    assert ms_ssim(a, b).item() == pytest.approx(expected, rel=1e-6)
    weights = WEIGHTS if size >= 16 else renormalised(4)
    assert reference_msssim(a[0].numpy(), b[0].numpy(), weights) == pytest.approx(
        expected, rel=1e-9
    )
