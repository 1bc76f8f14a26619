"""The SWD image pyramid: filter values, pyramid steps checked against hand-computed pixels and
scipy's mirror convolution (what the official code calls), level shapes, exact inversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progan_dsl.metrics.pyramid import (
    binomial_filter_2d,
    laplacian_level,
    laplacian_pyramid,
    pyr_down,
    pyr_up,
    reconstruct_laplacian_pyramid,
    swd_resolutions,
)


def _random_images(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=generator, dtype=torch.float64) * 255


def test_binomial_filter_is_outer_product_over_256() -> None:
    f = binomial_filter_2d()
    assert f.shape == (5, 5)
    assert f[2, 2].item() == 36 / 256
    assert f[0, 0].item() == 1 / 256
    assert f[0, 2].item() == 6 / 256
    assert f.sum().item() == pytest.approx(1.0, abs=1e-15)


def test_pyr_down_of_an_impulse_picks_filter_taps() -> None:
    # A single 1 at (6, 6) of a 16x16 image: output (i, j) is centred on input (2i, 2j), so it
    # reads the filter at offset (6 - 2i, 6 - 2j); taps per axis 1, 4, 6, 4, 1 (/16).
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    x[0, 0, 6, 6] = 1.0
    y = pyr_down(x)[0, 0]
    assert y.shape == (8, 8)
    assert y[3, 3].item() == pytest.approx(36 / 256)  # offset (0, 0)
    assert y[2, 2].item() == pytest.approx(1 / 256)  # offset (2, 2)
    assert y[3, 2].item() == pytest.approx(6 / 256)  # offset (0, 2)
    assert y[4, 3].item() == pytest.approx(6 / 256)  # offset (-2, 0)
    assert y[0, 0].item() == 0.0
    # Only even offsets are sampled: (1 + 6 + 1)^2 / 256 of the impulse survives.
    assert y.sum().item() == pytest.approx(64 / 256)


def test_pyr_down_mirror_border() -> None:
    # Mirror borders reflect without repeating the edge pixel (index -1 reads 1, -2 reads 2).
    # A 1 at the corner (0, 0) is therefore seen once by output (0, 0) ...
    corner = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    corner[0, 0, 0, 0] = 1.0
    y = pyr_down(corner)[0, 0]
    assert y[0, 0].item() == pytest.approx(36 / 256)
    assert y[0, 1].item() == pytest.approx(6 / 256)
    assert y[1, 1].item() == pytest.approx(1 / 256)
    assert y.sum().item() == pytest.approx((36 + 6 + 6 + 1) / 256)
    # ... while a 1 at (2, 2) is also seen through its mirror images at (-2, 2), (2, -2), (-2, -2).
    inner = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    inner[0, 0, 2, 2] = 1.0
    y = pyr_down(inner)[0, 0]
    assert y[0, 0].item() == pytest.approx(4 * 1 / 256)
    assert y[0, 1].item() == pytest.approx(2 * 6 / 256)
    assert y[1, 1].item() == pytest.approx(36 / 256)


def test_constant_image_is_preserved() -> None:
    x = torch.full((2, 3, 16, 16), 77.0, dtype=torch.float64)
    assert torch.allclose(pyr_down(x), torch.full((2, 3, 8, 8), 77.0, dtype=torch.float64))
    assert torch.allclose(pyr_up(x), torch.full((2, 3, 32, 32), 77.0, dtype=torch.float64))
    bands = laplacian_pyramid(x, 3)
    assert all(band.abs().max().item() < 1e-12 for band in bands[:-1])


def test_steps_match_scipy_mirror_convolution() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _random_images(2, 3, 32)
    kernel = binomial_filter_2d().numpy()[None, None]
    down = ndimage.convolve(x.numpy(), kernel, mode="mirror")[:, :, ::2, ::2]
    np.testing.assert_allclose(pyr_down(x).numpy(), down, rtol=0, atol=1e-10)
    zero_filled = np.zeros((2, 3, 64, 64))
    zero_filled[:, :, ::2, ::2] = x.numpy()
    up = ndimage.convolve(zero_filled, kernel * 4, mode="mirror")
    np.testing.assert_allclose(pyr_up(x).numpy(), up, rtol=0, atol=1e-10)


def test_level_shapes_and_exact_reconstruction() -> None:
    x = _random_images(3, 3, 64)
    bands = laplacian_pyramid(x, 3)
    assert [tuple(b.shape) for b in bands] == [(3, 3, 64, 64), (3, 3, 32, 32), (3, 3, 16, 16)]
    assert torch.allclose(reconstruct_laplacian_pyramid(bands), x, atol=1e-10)
    # The low-pass residual has the image's mean brightness; the bands average to ~0.
    assert bands[-1].mean().item() == pytest.approx(x.mean().item(), rel=1e-2)
    assert abs(bands[0].mean().item()) < 1.0


def test_uint8_pyramid_reconstructs_in_float32() -> None:
    x = _random_images(2, 1, 32).round().to(torch.uint8)
    bands = laplacian_pyramid(x, 2)
    assert bands[0].dtype == torch.float32
    assert torch.allclose(reconstruct_laplacian_pyramid(bands), x.float(), atol=1e-3)


def test_single_level_equals_full_pyramid() -> None:
    x = _random_images(2, 3, 32)
    bands = laplacian_pyramid(x, 3)
    for level in range(3):
        assert torch.equal(laplacian_level(x, level, 3), bands[level])


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        laplacian_pyramid(torch.zeros(1, 1, 30, 30), 3)
    with pytest.raises(ValueError, match="larger than 2x2"):
        pyr_down(torch.zeros(1, 1, 2, 2))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1024, [1024, 512, 256, 128, 64, 32, 16]),
        (128, [128, 64, 32, 16]),  # paper Figure 9 columns
        (64, [64, 32, 16]),
        (16, [16]),
        (8, [8]),  # smaller than 16: the image itself
        (4, [4]),
    ],
)
def test_swd_resolutions(size: int, expected: list[int]) -> None:
    assert swd_resolutions(size) == expected
