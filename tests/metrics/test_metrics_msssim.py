"""MS-SSIM: exact values for identical and unrelated images, the scale plan and its notes, and
the diversity average over random pairs. Agreement with the official definition at every size:
test_metrics_official_msssim.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from progan_dsl.errors import UserError
from progan_dsl.metrics.msssim import (
    gaussian_taps,
    ms_ssim,
    ms_ssim_diversity,
    ms_ssim_diversity_result,
    msssim_scales,
    random_pairs,
    scale_weights,
)
from progan_dsl.metrics.synthetic import textures, uniform_noise


@pytest.mark.parametrize("size", [1, 2, 4, 8, 16, 32, 64])
def test_identical_images_score_exactly_one(size: int) -> None:
    images = textures(4, size, seed=size)
    assert torch.equal(ms_ssim(images, images.clone()), torch.ones(4, dtype=torch.float64))
    assert torch.equal(ms_ssim(images.float(), images.float()), torch.ones(4, dtype=torch.float64))


def test_independent_noise_scores_low() -> None:
    a = uniform_noise(16, 64, seed=1)
    b = uniform_noise(16, 64, seed=2)
    values = ms_ssim(a, b)
    assert values.shape == (16,)
    assert values.min().item() >= 0.0
    # Far from 1, though not 0: the official coarsest scales (4 and 8 px at 64x64) hold few
    # pixels, so their terms of unrelated images scatter around 0 and are clipped there.
    assert values.mean().item() < 0.1


def test_more_noise_means_less_similar() -> None:
    base = textures(8, 32, seed=3).float()
    noise = uniform_noise(8, 32, seed=4).float() - 127.5
    scores = [
        ms_ssim(base, (base + s * noise).clamp(0, 255)).mean().item() for s in (0.05, 0.2, 0.6)
    ]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


@pytest.mark.parametrize(
    ("size", "sizes", "windows", "official"),
    [
        (1, [1], [1], False),
        (4, [4, 2, 1], [4, 2, 1], False),
        (8, [8, 4, 2, 1], [8, 4, 2, 1], False),
        (16, [16, 8, 4, 2, 1], [11, 8, 4, 2, 1], True),
        (32, [32, 16, 8, 4, 2], [11, 11, 8, 4, 2], True),
        (64, [64, 32, 16, 8, 4], [11, 11, 11, 8, 4], True),
        (128, [128, 64, 32, 16, 8], [11, 11, 11, 11, 8], True),
        (256, [256, 128, 64, 32, 16], [11] * 5, True),
        (48, [48, 24, 12, 6, 3], [11, 11, 11, 6, 3], True),
        (24, [24, 12, 6, 3, 1], [11, 11, 6, 3, 1], False),
    ],
)
def test_scale_plan(size: int, sizes: list[int], windows: list[int], official: bool) -> None:
    # Five scales (official), halving down to 1 pixel; window min(11, side).
    plan = msssim_scales(size, size)
    assert [h for h, _ in plan.sizes] == sizes
    assert list(plan.windows) == windows
    assert plan.official is official
    assert (plan.note == "") is official


def test_scale_plan_notes() -> None:
    assert msssim_scales(8, 8).note == (
        "8x8 images: the official MS-SSIM needs at least 16x16 (five scales, the coarsest 1 "
        "pixel; its code fails below); computed 4 scale(s) down to 1 pixel with the first 4 "
        "weights renormalised to sum 1; not comparable with official values or with other "
        "image sizes"
    )
    assert msssim_scales(40, 40).note == (
        "40x40 images: sides are not multiples of 16, so the 2x2 average meets an odd size "
        "(5x5) that the official code cannot halve; the last row/column is dropped there, so "
        "values differ slightly from any official run"
    )
    plan = msssim_scales(32, 64)
    assert plan.sizes == ((32, 64), (16, 32), (8, 16), (4, 8), (2, 4))
    assert plan.describe() == (
        "5 scales 32x64/16x32/8x16/4x8/2x4 px, windows 11/11/8/4/2 (official)"
    )
    assert msssim_scales(4, 4).describe() == (
        "3 scales 4/2/1 px, windows 4/2/1 (not the official definition)"
    )
    with pytest.raises(ValueError, match="at least 1x1"):
        msssim_scales(0, 4)


def test_scale_weights() -> None:
    assert scale_weights(5) == [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    three = scale_weights(3)
    assert sum(three) == pytest.approx(1.0)
    total = 0.0448 + 0.2856 + 0.3001
    assert three == pytest.approx([0.0448 / total, 0.2856 / total, 0.3001 / total])
    assert scale_weights(1) == [1.0]
    with pytest.raises(ValueError, match="1..5"):
        scale_weights(6)


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
    assert ms_ssim_diversity(uniform_noise(10, 32, seed=8), num_pairs=50) < 0.2


def test_diversity_is_seeded_mean_of_pair_scores() -> None:
    images = textures(12, 32, seed=9)
    first, second = random_pairs(12, 40, seed=3)
    expected = ms_ssim(images[first], images[second]).mean().item()
    got = ms_ssim_diversity(images, num_pairs=40, seed=3, batch_size=7)
    assert got == pytest.approx(expected, rel=1e-12)
    result = ms_ssim_diversity_result(images, num_pairs=40, seed=3)
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert (result.num_pairs, result.note, result.scales) == (40, "", msssim_scales(32, 32))
    assert result.as_dict() == {"msssim": result.value}
    assert ms_ssim_diversity_result(textures(3, 8), num_pairs=4).note.startswith("8x8 images:")
    assert not math.isclose(got, ms_ssim_diversity(images, num_pairs=40, seed=4))


def test_bad_inputs() -> None:
    with pytest.raises(UserError, match="same"):
        ms_ssim(textures(2, 16), textures(2, 32))
    with pytest.raises(ValueError, match="at least 2"):
        ms_ssim_diversity(textures(1, 16), num_pairs=4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    a, b = textures(8, 64, seed=10), uniform_noise(8, 64, seed=11)
    mixed = ((a.float() + b.float()) / 2).round().to(torch.uint8)
    cpu = ms_ssim(a, mixed)
    gpu = ms_ssim(a.cuda(), mixed.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=0)
