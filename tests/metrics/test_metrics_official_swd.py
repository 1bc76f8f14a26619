"""SWD against an independent float64 NumPy/SciPy implementation of the official algorithm
(tkarras/progressive_growing_of_gans, metrics/sliced_wasserstein.py), fed the same random numbers:
the project's draws are recorded and replayed into the reference.

The reference follows the official steps, written here from their definitions: Laplacian pyramid
with `scipy.ndimage.convolve(..., mode="mirror")` and the 5x5 binomial filter / 256 (x4 for the
upsampling), levels down to 16x16 with the low-pass residual last; 7x7 neighbourhoods around the
given centres, listed the official way (the descriptor's first spatial axis follows x, the
second y); per-channel mean/std normalisation over the whole set; per direction set: project,
sort, mean absolute difference; x1e3; average of the levels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progan_dsl.metrics.swd import (
    PatchSampling,
    SetName,
    SWDRandomness,
    SWDResult,
    sliced_wasserstein,
    swd_floor,
)
from progan_dsl.metrics.synthetic import textures, uniform_noise

ndimage = pytest.importorskip("scipy.ndimage")

# Measured over these cases and seeds 0-3: the float32 project differs from this float64
# reference by at most 6e-7 relative (the official float32 code, fed the same numbers, by up to
# 5e-5: it normalises in float32). 1e-4 is the bar of issue #14.
RTOL = 1e-4


class RecordingRandomness(SWDRandomness):
    """The project's random numbers, kept for the reference."""

    def __init__(self, seed: int, patches: PatchSampling) -> None:
        super().__init__(seed, patches)
        self.centre_draws: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        self.direction_draws: list[np.ndarray] = []

    def centres(
        self,
        level: int,
        which: SetName,
        num_images: int,
        nhoods_per_image: int,
        height: int,
        width: int,
        nhood_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ys, xs = super().centres(
            level, which, num_images, nhoods_per_image, height, width, nhood_size
        )
        self.centre_draws[(level, which)] = (ys.numpy().copy(), xs.numpy().copy())
        return ys, xs

    def directions(self, dim: int, count: int) -> torch.Tensor:
        dirs = super().directions(dim, count)
        self.direction_draws.append(dirs.numpy().copy())
        return dirs


# ---- the reference ---------------------------------------------------------------------------

_BINOMIAL = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float64) / 256.0


def _pyr_down(x: np.ndarray) -> np.ndarray:
    return ndimage.convolve(x, _BINOMIAL[None, None], mode="mirror")[:, :, ::2, ::2]


def _pyr_up(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    up = np.zeros((n, c, 2 * h, 2 * w))
    up[:, :, ::2, ::2] = x
    return ndimage.convolve(up, 4.0 * _BINOMIAL[None, None], mode="mirror")


def _laplacian(images: np.ndarray, num_levels: int) -> list[np.ndarray]:
    levels = [images.astype(np.float64)]
    for _ in range(1, num_levels):
        levels.append(_pyr_down(levels[-1]))
        levels[-2] = levels[-2] - _pyr_up(levels[-1])
    return levels


def _descriptors(level: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """Official layout: desc[m, c, i, j] = level[image, c, y + j - half, x + i - half]."""
    n, c, _, _ = level.shape
    half = size // 2
    k = ys.shape[1]
    off = np.arange(-half, half + 1)
    img = np.repeat(np.arange(n), k)[:, None, None, None]
    chan = np.arange(c)[None, :, None, None]
    x = xs.reshape(-1)[:, None, None, None] + off[None, None, :, None]  # axis 2 follows x
    y = ys.reshape(-1)[:, None, None, None] + off[None, None, None, :]  # axis 3 follows y
    desc = level[img, chan, y, x]
    desc = desc - desc.mean(axis=(0, 2, 3), keepdims=True)
    desc = desc / desc.std(axis=(0, 2, 3), keepdims=True)
    return desc.reshape(desc.shape[0], -1)


def _to_official_layout(dirs: np.ndarray, channels: int, size: int) -> np.ndarray:
    """Directions over row-major patches [C, y, x] re-indexed for the official [C, x, y]."""
    k = dirs.shape[1]
    return dirs.reshape(channels, size, size, k).transpose(0, 2, 1, 3).reshape(-1, k)


def reference_swd(
    real: np.ndarray, fake: np.ndarray, draws: RecordingRandomness, size: int = 7
) -> list[float]:
    """Official SWD x1e3 per level and their mean, with the recorded random numbers."""
    res = real.shape[2]
    num_levels = 0
    while res >= 16:
        num_levels, res = num_levels + 1, res // 2
    channels = real.shape[1]
    pyramids = _laplacian(real, num_levels), _laplacian(fake, num_levels)
    directions = iter(draws.direction_draws)
    dists = []
    for level in range(num_levels):
        a, b = (
            _descriptors(pyr[level], *draws.centre_draws[(level, which)], size)
            for pyr, which in zip(pyramids, ("real", "fake"))
        )
        repeats = []
        for _ in range(4):
            dirs = _to_official_layout(next(directions), channels, size)
            # [directions, descriptors], each row sorted (the official sorts [M, K] along M).
            proj_a, proj_b = np.sort(dirs.T @ a.T, axis=1), np.sort(dirs.T @ b.T, axis=1)
            repeats.append(np.mean(np.abs(proj_a - proj_b)))
        dists.append(np.mean(repeats) * 1e3)
    return [*dists, float(np.mean(dists))]


def _project(result: SWDResult) -> list[float]:
    return [*result.per_level.values(), result.average]


# ---- cases -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sets() -> dict[str, torch.Tensor]:
    return {
        "tex64": textures(16, 64, seed=0),
        "tex64b": textures(16, 64, seed=1),
        "tex32": textures(32, 32, seed=2),
        "noise32": uniform_noise(32, 32, seed=3),
    }


@pytest.mark.parametrize(
    ("real", "fake", "patches"),
    [
        ("tex64", "tex64b", "fresh"),
        ("tex32", "noise32", "fresh"),
        ("tex64", "tex64b", "shared"),
    ],
)
def test_matches_the_official_algorithm_with_the_same_random_numbers(
    sets: dict[str, torch.Tensor], real: str, fake: str, patches: PatchSampling
) -> None:
    draws = RecordingRandomness(seed=7, patches=patches)
    got = sliced_wasserstein(sets[real], sets[fake], seed=7, patches=patches, randomness=draws)
    expected = reference_swd(sets[real].numpy(), sets[fake].numpy(), draws)
    assert len(got.per_level) == len(expected) - 1
    np.testing.assert_allclose(_project(got), expected, rtol=RTOL)


@pytest.mark.parametrize("name", ["tex64", "tex32"])
def test_real_vs_real_with_fresh_patches_is_the_positive_official_floor(
    sets: dict[str, torch.Tensor], name: str
) -> None:
    images = sets[name]
    draws = RecordingRandomness(seed=0, patches="fresh")
    got = sliced_wasserstein(images, images.clone(), randomness=draws)
    expected = reference_swd(images.numpy(), images.numpy(), draws)
    assert min(got.per_level.values()) > 0
    np.testing.assert_allclose(_project(got), expected, rtol=RTOL)
    # The two copies were cut at different positions.
    ys_real, _ = draws.centre_draws[(0, "real")]
    ys_fake, _ = draws.centre_draws[(0, "fake")]
    assert not np.array_equal(ys_real, ys_fake)
    # `swd_floor` is this computation; with shared patches the same sets give exactly 0.
    assert swd_floor(images) == got
    assert sliced_wasserstein(images, images, patches="shared").average == 0.0


def test_fresh_and_shared_differ_only_in_the_fake_positions(
    sets: dict[str, torch.Tensor],
) -> None:
    fresh = RecordingRandomness(seed=3, patches="fresh")
    shared = RecordingRandomness(seed=3, patches="shared")
    a, b = sets["tex32"][:8], sets["noise32"][:8]
    sliced_wasserstein(a, b, seed=3, patches="fresh", randomness=fresh)
    sliced_wasserstein(a, b, seed=3, patches="shared", randomness=shared)
    for level in (0, 1):
        np.testing.assert_array_equal(
            fresh.centre_draws[(level, "real")][0], shared.centre_draws[(level, "real")][0]
        )
        np.testing.assert_array_equal(
            shared.centre_draws[(level, "real")][1], shared.centre_draws[(level, "fake")][1]
        )
    for f, s in zip(fresh.direction_draws, shared.direction_draws):
        np.testing.assert_array_equal(f, s)
