"""Sliced Wasserstein distance: the 1-D distance against closed forms, descriptor sampling and
normalisation, and the full metric's behaviour (zero for identical sets with shared patches, a
positive floor with fresh ones, ranking of a blurred and a noise set, seeding, batching, small
images, notes). Agreement with the official algorithm: test_metrics_official_swd.py."""

from __future__ import annotations

import math

import pytest
import torch

from progan_dsl.errors import UserError
from progan_dsl.metrics.swd import (
    PatchSampling,
    SWDRandomness,
    effective_nhood_size,
    normalize_descriptors,
    project_sorted,
    sample_descriptors,
    sliced_wasserstein,
    sliced_wasserstein_distance,
    swd_floor,
)
from progan_dsl.metrics.synthetic import blurred, textures, uniform_noise


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- the distance between descriptor sets ----------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.25, -1.5, 3.0])
def test_w1_of_shifted_1d_sets_is_the_shift(shift: float) -> None:
    # In 1-D the only unit directions are +1 and -1, and W1(P, P + c) = |c| exactly; b is
    # shuffled, so the result also shows the sets are sorted before they are compared.
    a = torch.randn(4096, 1, generator=_gen(1), dtype=torch.float64)
    b = (a + shift)[torch.randperm(4096, generator=_gen(2))]
    got = sliced_wasserstein_distance(a, b, generator=_gen(3))
    assert got == pytest.approx(abs(shift), abs=1e-12)


def test_sliced_w1_of_a_shifted_set_matches_the_sphere_average() -> None:
    # Shifting by vector s moves every projection onto d by s.d, so the sliced distance is the
    # mean of |s.d| over the random directions; for uniform unit d in D dimensions
    # E|s.d| = |s| Gamma(D/2) / (sqrt(pi) Gamma((D + 1) / 2)).
    dim, shift = 49, 2.0
    a = torch.randn(2000, dim, generator=_gen(4), dtype=torch.float64)
    s = torch.zeros(dim, dtype=torch.float64)
    s[0] = shift
    got = sliced_wasserstein_distance(
        a, a + s, dir_repeats=8, dirs_per_repeat=256, generator=_gen(5)
    )
    expected = shift * math.gamma(dim / 2) / (math.sqrt(math.pi) * math.gamma((dim + 1) / 2))
    assert got == pytest.approx(expected, rel=0.05)


def test_identical_sets_have_distance_zero_and_sizes_must_match() -> None:
    a = torch.randn(300, 10, generator=_gen(6))
    assert sliced_wasserstein_distance(a, a.flip(0), generator=_gen(7)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein_distance(a, a[:-1], generator=_gen(7))


def test_project_sorted_equals_torch_sort() -> None:
    points = torch.randn(1001, 20, generator=_gen(8))
    dirs = torch.randn(20, 7, generator=_gen(9))
    expected = torch.sort(dirs.T @ points.T, dim=1).values
    assert torch.equal(project_sorted(points, dirs), expected)


# ---- descriptors -----------------------------------------------------------------------------


def test_descriptors_are_whole_neighbourhoods_of_their_own_image() -> None:
    # Pixel value encodes (image, channel, y, x), so every descriptor reveals where it came from.
    n, c, h, w, size = 3, 2, 12, 10, 7
    grid = torch.arange(n * c * h * w, dtype=torch.float64).reshape(n, c, h, w)
    desc = sample_descriptors(grid, size, nhoods_per_image=500, generator=_gen(10))
    assert desc.shape == (n * 500, c, size, size)
    image = (desc[:, 0, 0, 0] // (c * h * w)).long()
    assert torch.equal(image, torch.arange(n).repeat_interleave(500))  # image-major order
    top_left = desc[:, 0, 0, 0] - image * (c * h * w)
    y0, x0 = top_left // w, top_left % w
    offsets = torch.arange(size, dtype=torch.float64)
    expected = desc[:, 0, :1, :1] + offsets[:, None] * w + offsets[None, :]
    assert torch.equal(desc[:, 0], expected)
    assert torch.equal(desc[:, 1] - desc[:, 0], torch.full_like(desc[:, 0], h * w))
    # Every centre where the 7x7 window fits is used, and no other.
    assert (y0.min(), y0.max(), x0.min(), x0.max()) == (0, h - size, 0, w - size)


def test_normalize_descriptors_per_channel() -> None:
    desc = torch.randn(5000, 3, 7, 7, generator=_gen(11)) * torch.tensor([1.0, 20.0, 0.1]).view(
        1, 3, 1, 1
    )
    desc = desc + torch.tensor([5.0, -3.0, 100.0]).view(1, 3, 1, 1)
    flat = normalize_descriptors(desc).view(5000, 3, 49)
    assert torch.allclose(flat.mean(dim=(0, 2)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(flat.std(dim=(0, 2), unbiased=False), torch.ones(3), atol=1e-4)
    constant = normalize_descriptors(torch.full((10, 1, 3, 3), 9.0))
    assert torch.equal(constant, torch.zeros(10, 9))


# ---- the metric ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def texture_halves() -> tuple[torch.Tensor, torch.Tensor]:
    images = textures(256, 32, seed=0)
    return images[:128], images[128:]


def test_identical_sets_give_zero_with_shared_patches(
    texture_halves: tuple[torch.Tensor, torch.Tensor],
) -> None:
    a, _ = texture_halves
    result = sliced_wasserstein(a, a.clone(), patches="shared")
    assert (result.per_level, result.average, result.patches) == ({32: 0.0, 16: 0.0}, 0.0, "shared")
    assert result.note == (
        "patches shared between the sets: identical sets give 0 and values are lower than "
        "official ones, which draw fresh patches per set"
    )
    # The default draws fresh patches per set, as the official evaluation: a positive floor.
    fresh = sliced_wasserstein(a[:32], a[:32].clone())
    assert fresh.patches == "fresh" and fresh.note == ""
    assert min(fresh.per_level.values()) > 0


def test_blur_and_noise_rank_above_the_real_vs_real_floor(
    texture_halves: tuple[torch.Tensor, torch.Tensor],
) -> None:
    a, b = texture_halves
    floor = sliced_wasserstein(a, b)  # two disjoint halves of one distribution
    blur = sliced_wasserstein(a, blurred(b))
    noise = sliced_wasserstein(a, uniform_noise(128, 32, seed=1))
    assert 0 < floor.average < blur.average < noise.average
    # Blurring removes the finest band's detail: that level sees it most clearly.
    assert blur.per_level[32] > 2 * floor.per_level[32]
    assert noise.per_level[16] > 1.5 * floor.per_level[16]
    assert floor.average == pytest.approx(sum(floor.per_level.values()) / 2)
    assert floor.as_dict() == {
        "swd_avg": floor.average,
        "swd_32": floor.per_level[32],
        "swd_16": floor.per_level[16],
    }


def test_seeded_and_independent_of_input_dtype(
    texture_halves: tuple[torch.Tensor, torch.Tensor],
) -> None:
    a, b = texture_halves[0][:32], texture_halves[1][:32]
    first = sliced_wasserstein(a, b, seed=3)
    assert sliced_wasserstein(a, b, seed=3) == first
    assert sliced_wasserstein(a.float(), b.float(), seed=3) == first
    other = sliced_wasserstein(a, b, seed=4)
    assert other != first
    assert other.average == pytest.approx(first.average, rel=0.5)  # another sample, same scale


@pytest.mark.parametrize(("size", "nhood"), [(8, 7), (4, 3)])
def test_small_images_use_one_level(size: int, nhood: int) -> None:
    assert effective_nhood_size(size, size) == nhood
    a = textures(16, size, seed=5)
    result = sliced_wasserstein(a, uniform_noise(16, size, seed=6))
    assert list(result.per_level) == [size]
    assert result.average > 0
    assert result.note == (
        f"{size}x{size} images are below the official 16x16 (it scores no level there): one "
        f"level, the image itself, {nhood}x{nhood} neighbourhoods"
    )


@pytest.mark.parametrize("patches", ["fresh", "shared"])
def test_batch_size_does_not_change_the_result(patches: PatchSampling) -> None:
    # All centres of a level are drawn before the images are cut in batches.
    a, b = textures(20, 32, seed=11), textures(20, 32, seed=12)
    whole = sliced_wasserstein(a, b, seed=2, patches=patches)
    batched = sliced_wasserstein(a, b, seed=2, patches=patches, batch_size=7)
    assert batched.per_level == pytest.approx(whole.per_level, rel=1e-6)


def test_fresh_patches_give_the_same_scale_as_shared(
    texture_halves: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # Two halves of one distribution: both modes give the same scale here (unaligned textures:
    # a position does not predict the patch). A set against itself with fresh patches scores
    # lower than against other images of the distribution, but not 0.
    a, b = texture_halves[0][:24], texture_halves[1][:24]
    fresh = sliced_wasserstein(a, b)
    shared = sliced_wasserstein(a, b, patches="shared")
    assert fresh.average == pytest.approx(shared.average, rel=0.3)
    floor = swd_floor(a)
    assert floor == sliced_wasserstein(a, a, patches="fresh")
    assert 0 < floor.average < fresh.average
    assert swd_floor(a[:8], b[:8], seed=4) == sliced_wasserstein(a[:8], b[:8], seed=4)


def _centred_blobs(num: int, seed: int) -> torch.Tensor:
    """Aligned images (a bright blob at the centre plus noise): a position predicts the patch."""
    generator = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blob = 200 * torch.exp(-((x - 16) ** 2 + (y - 16) ** 2) / 40)
    noisy = blob + 30 * torch.randn(num, 3, 32, 32, generator=generator)
    return noisy.clamp(0, 255).round().to(torch.uint8)


def test_shared_patches_score_aligned_data_lower() -> None:
    # Why "fresh" is the default: on aligned data shared positions cancel the position sampling
    # noise, so real vs fake scores lower than the official evaluation would (measured over seeds
    # 0-5 at the 16 px level: fresh/shared 1.41 to 2.27).
    a, b = _centred_blobs(32, seed=0), _centred_blobs(32, seed=1)
    fresh = sliced_wasserstein(a, b)
    shared = sliced_wasserstein(a, b, patches="shared")
    assert fresh.per_level[16] > 1.2 * shared.per_level[16]


def test_bad_patch_sampling_and_mismatched_randomness() -> None:
    a = textures(4, 16)
    with pytest.raises(UserError) as err:
        sliced_wasserstein(a, a, patches="official")  # type: ignore[arg-type]
    assert str(err.value) == "SWD patch sampling must be one of 'fresh', 'shared', got 'official'"
    with pytest.raises(ValueError, match="randomness has seed 1 and patches 'shared'"):
        sliced_wasserstein(a, a, randomness=SWDRandomness(1, "shared"))


def test_grayscale_images() -> None:
    a = textures(16, 16, channels=1, seed=7)
    assert sliced_wasserstein(a, a, patches="shared").average == 0.0
    result = sliced_wasserstein(a, textures(16, 16, channels=1, seed=8))
    assert result.average > 0
    assert result.note.startswith("grayscale: the official evaluation tiles it to RGB")
    assert "0.9966 on average" in result.note


def test_mismatched_sets_are_user_errors() -> None:
    a = textures(8, 16)
    with pytest.raises(UserError, match="same"):
        sliced_wasserstein(a, textures(7, 16))
    with pytest.raises(UserError, match=r"\[N, C, H, W\]"):
        sliced_wasserstein(a[0], a[0])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(texture_halves: tuple[torch.Tensor, torch.Tensor]) -> None:
    a, b = texture_halves
    cpu = sliced_wasserstein(a, b)
    gpu = sliced_wasserstein(a.cuda(), b.cuda())
    assert gpu.average == pytest.approx(cpu.average, rel=1e-4)


def test_non_square_levels_are_keyed_by_the_longer_side() -> None:
    # 32x64 images: the shorter side allows two levels (32, 16); keys follow the longer side.
    a = textures(8, 64, seed=9)[:, :, :32]
    b = textures(8, 64, seed=10)[:, :, :32]
    result = sliced_wasserstein(a, b)
    assert list(result.per_level) == [64, 32]
    assert result.average > 0
