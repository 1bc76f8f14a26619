"""MS-SSIM: exact values for identical and unrelated images, the scale rule for small images,
agreement with an independent straightforward implementation at 128x128 (where the rule equals
the official computation), and the diversity average over random pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from progan_dsl.errors import UserError
from progan_dsl.metrics.msssim import (
    MSSSIM_WEIGHTS,
    gaussian_taps,
    ms_ssim,
    ms_ssim_diversity,
    num_scales,
    random_pairs,
    scale_weights,
)
from progan_dsl.metrics.synthetic import textures, uniform_noise


@pytest.mark.parametrize("size", [4, 8, 16, 32, 64])
def test_identical_images_score_exactly_one(size: int) -> None:
    images = textures(4, size, seed=size)
    assert torch.equal(ms_ssim(images, images.clone()), torch.ones(4, dtype=torch.float64))
    assert torch.equal(ms_ssim(images.float(), images.float()), torch.ones(4, dtype=torch.float64))


def test_independent_noise_scores_near_zero() -> None:
    a = uniform_noise(16, 64, seed=1)
    b = uniform_noise(16, 64, seed=2)
    values = ms_ssim(a, b)
    assert values.shape == (16,)
    assert values.min().item() >= 0.0
    assert values.mean().item() < 0.05


def test_more_noise_means_less_similar() -> None:
    base = textures(8, 32, seed=3).float()
    noise = uniform_noise(8, 32, seed=4).float() - 127.5
    scores = [
        ms_ssim(base, (base + s * noise).clamp(0, 255)).mean().item() for s in (0.05, 0.2, 0.6)
    ]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


@pytest.mark.parametrize(
    ("size", "scales"), [(4, 1), (8, 1), (16, 2), (32, 3), (64, 4), (128, 5), (1024, 5)]
)
def test_scale_rule(size: int, scales: int) -> None:
    # Coarsest scale size // 2**(scales - 1) stays >= 8, at most five scales.
    assert num_scales(size) == scales


def test_scale_weights() -> None:
    assert scale_weights(5) == [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    three = scale_weights(3)
    assert sum(three) == pytest.approx(1.0)
    total = 0.0448 + 0.2856 + 0.3001
    assert three == pytest.approx([0.0448 / total, 0.2856 / total, 0.3001 / total])
    assert scale_weights(1) == [1.0]


def test_gaussian_window_matches_fspecial() -> None:
    # MATLAB fspecial('gaussian', 11, 1.5): exp(-(x^2 + y^2) / (2 sigma^2)) normalised, x in -5..5.
    x = np.arange(-5, 6, dtype=np.float64)
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    taps = gaussian_taps(11, 1.5).numpy()
    np.testing.assert_allclose(np.outer(taps, taps), window, rtol=1e-12)
    # Even sizes are centred between pixels: x in -1.5, -0.5, 0.5, 1.5.
    even = np.exp(-(np.array([-1.5, -0.5, 0.5, 1.5]) ** 2) / (2 * 0.5**2))
    np.testing.assert_allclose(gaussian_taps(4, 0.5).numpy(), even / even.sum(), rtol=1e-12)


def _reference_ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Straightforward MS-SSIM of one [C, H, W] pair: per channel 'valid' 2-D convolution with
    the Gaussian window (shrunk for small scales), five scales, 2x2 average downsampling."""
    signal = pytest.importorskip("scipy.signal")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    product = 1.0
    for scale, weight in enumerate(MSSSIM_WEIGHTS):
        size = min(11, a.shape[1], a.shape[2])
        sigma = 1.5 * size / 11
        x = np.arange(size) - (size - 1) / 2
        window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
        window /= window.sum()
        ssims, css = [], []
        for ch in range(a.shape[0]):
            mu_a = signal.convolve2d(a[ch], window, mode="valid")
            mu_b = signal.convolve2d(b[ch], window, mode="valid")
            var_a = signal.convolve2d(a[ch] ** 2, window, mode="valid") - mu_a**2
            var_b = signal.convolve2d(b[ch] ** 2, window, mode="valid") - mu_b**2
            cov = signal.convolve2d(a[ch] * b[ch], window, mode="valid") - mu_a * mu_b
            cs = (2 * cov + c2) / (var_a + var_b + c2)
            ssims.append((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs)
            css.append(cs)
        value = np.mean(ssims) if scale == len(MSSSIM_WEIGHTS) - 1 else np.mean(css)
        product *= max(value, 0.0) ** weight
        a = (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]) / 4
        b = (b[:, 0::2, 0::2] + b[:, 1::2, 0::2] + b[:, 0::2, 1::2] + b[:, 1::2, 1::2]) / 4
    return product


def test_matches_independent_implementation_at_128() -> None:
    base = textures(2, 128, seed=5).float()
    noise = uniform_noise(2, 128, seed=6).float() - 127.5
    other = (base + noise).clamp(0, 255).round().to(torch.uint8)
    base = base.to(torch.uint8)
    got = ms_ssim(base, other)
    for i in range(2):
        expected = _reference_ms_ssim(base[i].numpy(), other[i].numpy())
        assert 0.05 < expected < 0.99
        assert got[i].item() == pytest.approx(expected, abs=1e-4)


def test_random_pairs_are_distinct_and_cover_all_images() -> None:
    first, second = random_pairs(5, 20_000, seed=0)
    assert (first != second).all()
    assert set(first.tolist()) == set(second.tolist()) == set(range(5))
    # Uniform over the 20 ordered pairs.
    counts = torch.bincount(first * 5 + second, minlength=25).float()
    assert counts.view(5, 5).diagonal().sum().item() == 0
    assert counts.max().item() / counts[counts > 0].min().item() < 1.2


def test_diversity_of_a_collapsed_set_is_one_and_of_noise_near_zero() -> None:
    collapsed = textures(1, 32, seed=7).repeat(10, 1, 1, 1)
    assert ms_ssim_diversity(collapsed, num_pairs=50) == 1.0
    assert ms_ssim_diversity(uniform_noise(10, 32, seed=8), num_pairs=50) < 0.1


def test_diversity_is_seeded_mean_of_pair_scores() -> None:
    images = textures(12, 32, seed=9)
    first, second = random_pairs(12, 40, seed=3)
    expected = ms_ssim(images[first], images[second]).mean().item()
    got = ms_ssim_diversity(images, num_pairs=40, seed=3, batch_size=7)
    assert got == pytest.approx(expected, rel=1e-12)
    assert not math.isclose(got, ms_ssim_diversity(images, num_pairs=40, seed=4))


def test_bad_inputs() -> None:
    with pytest.raises(UserError, match="same"):
        ms_ssim(textures(2, 16), textures(2, 32))
    with pytest.raises(ValueError, match="at least 2"):
        ms_ssim_diversity(textures(1, 16), num_pairs=4)
