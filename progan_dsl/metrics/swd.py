"""Sliced Wasserstein distance (SWD) between two image sets, as defined in the ProGAN paper.

Owns the multi-scale statistical similarity of paper Section 5, computed the way the official code
(tkarras/progressive_growing_of_gans, metrics/sliced_wasserstein.py) computes it:

1. Laplacian pyramid of every image, from full resolution down to 16x16 (`pyramid.py`).
2. Per level, 128 random 7x7 neighbourhoods per image; each is a descriptor of 7*7*C values.
3. The descriptors of one set and level are normalised per colour channel (mean/std over the set).
4. Per level, 4 repeats of 128 random unit directions: project both sets, sort the projections,
   take the mean absolute difference (the 1-D Wasserstein-1 distance), average everything.
5. Reported x1e3 per level, plus the average of the levels.

Patch sampling, `patches=` (`PATCH_SAMPLINGS`):
- "fresh" (the default): each set draws its own neighbourhood positions, as the official
  evaluation does (its `feed` draws new positions for every minibatch of the real and of the fake
  pass). Two identical sets then give a positive value, the sampling floor (the official "Reals2"
  row). It is the default for real vs fake too, because the paper's and every official number
  were computed this way: the floor is part of them. Values from "shared" are lower wherever a
  position predicts the patch (aligned data such as faces: 1.4x to 2.3x lower at the 16 px level
  for centred blobs in the tests; about equal for unaligned textures), so they are not
  comparable with published ones. Real-vs-real floors always use "fresh" (`swd_floor`).
- "shared": both sets are cut at the same positions (image i of either set at the same places).
  Identical sets give exactly 0 and the position sampling noise cancels; useful as a sanity
  check and when only differences between runs of this project matter. This was the project's
  only mode before; its numbers are unchanged for sets of up to `BATCH_SIZE` images (larger sets
  were drawn batch by batch, which made them depend on `batch_size`).

Randomness comes from CPU `torch.Generator`s seeded from `seed` (`SWDRandomness`), so a result
depends only on the inputs, the seed and the mode (devices differ only by floating-point
rounding), not on `batch_size`. Fresh and shared draw the same real positions and the same
directions; they differ only in the fake set's positions.

Differences from the official code that change no value in distribution: the official
descriptor lists a patch's pixels column by column (its `x` offset on the row axis), this one
row by row; with isotropic random directions that relabelling changes nothing (with the same
directions mapped to pixels, the values are equal). Notes on what is not official are in
`SWDResult.note` (images below 16x16, which the official code does not score; grayscale, which the
official evaluation tiles to RGB; shared patches).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from progan_dsl.errors import UserError
from progan_dsl.metrics.images import check_image_batch, check_same_shape
from progan_dsl.metrics.progress import bar
from progan_dsl.metrics.pyramid import SWD_MIN_RESOLUTION, laplacian_level, swd_resolutions
from progan_dsl.metrics.registry import DEFAULT_PATCHES, PATCH_SAMPLINGS, PatchSampling

# Defaults from the official metrics/sliced_wasserstein.py `API.__init__` (paper Section 5).
NHOOD_SIZE = 7  # 7x7 pixel neighbourhoods
NHOODS_PER_IMAGE = 128  # descriptors sampled per image and level
DIR_REPEATS = 4  # independent sets of random directions
DIRS_PER_REPEAT = 128  # random unit directions per set
SWD_SCALE = 1e3  # the paper and the official code report SWD x 10^3
# Tiling a grayscale image to RGB (official evaluate_metrics) projects its 49 values onto the sum
# of the three 49-value parts of a random unit 147-vector: length sqrt(3 B), B ~ Beta(49/2, 98/2),
# mean sqrt(3) G(25) G(73.5) / (G(24.5) G(74)) = 0.9966 (G the gamma function).
GRAY_TILING_FACTOR = 0.9966
# Images per pyramid batch: bounds memory only, does not change the result.
BATCH_SIZE = 256

SetName = Literal["real", "fake"]

# Generator streams, so positions and directions never share random numbers. Real positions of
# level L come from stream L, the fake ones from stream L too ("shared") or from
# _FRESH_FAKE_STREAM + L ("fresh").
_FRESH_FAKE_STREAM = 100
_DIRECTIONS_STREAM = 1000


def check_patch_sampling(patches: str) -> PatchSampling:
    """`patches` as a `PatchSampling`, or a `UserError` naming the valid modes."""
    if patches not in PATCH_SAMPLINGS:
        valid = ", ".join(f"'{p}'" for p in PATCH_SAMPLINGS)
        raise UserError(f"SWD patch sampling must be one of {valid}, got '{patches}'")
    return patches  # type: ignore[return-value]


@dataclass(frozen=True)
class SWDResult:
    """SWD x1e3 per pyramid level (keyed by the level's resolution, finest first) and their mean,
    the patch sampling used, and `note`: how this differs from an official evaluation (empty when
    it does not)."""

    per_level: dict[int, float]
    average: float
    patches: PatchSampling = DEFAULT_PATCHES
    note: str = ""

    def as_dict(self, prefix: str = "swd") -> dict[str, float]:
        """Flat form for reports: {"swd_avg": ..., "swd_64": ..., "swd_32": ..., "swd_16": ...}."""
        flat = {f"{prefix}_avg": self.average}
        flat.update({f"{prefix}_{res}": value for res, value in self.per_level.items()})
        return flat


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


class SWDRandomness:
    """Every random number of one SWD evaluation: neighbourhood centres per level and set, and the
    sequence of direction sets, all from CPU generators seeded by `seed`.

    `sliced_wasserstein` asks for each level's centres once per set and for the directions level
    after level, repeat after repeat. A subclass may record or replace the draws (the tests feed
    the recorded numbers to an independent implementation).
    """

    def __init__(self, seed: int = 0, patches: PatchSampling = DEFAULT_PATCHES) -> None:
        self.seed = seed
        self.patches = check_patch_sampling(patches)
        self._directions = _generator(seed, _DIRECTIONS_STREAM)

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
        """Rows and columns [num_images, nhoods_per_image] of neighbourhood centres, uniform over
        the positions where the whole neighbourhood fits (official `randint(H, S - H)`, H =
        nhood_size // 2), with replacement."""
        fresh_fake = self.patches == "fresh" and which == "fake"
        generator = _generator(self.seed, level + (_FRESH_FAKE_STREAM if fresh_fake else 0))
        half = nhood_size // 2
        shape = (num_images, nhoods_per_image)
        ys = torch.randint(half, height - half, shape, generator=generator)
        xs = torch.randint(half, width - half, shape, generator=generator)
        return ys, xs

    def directions(self, dim: int, count: int) -> torch.Tensor:
        """The next `count` random unit directions in `dim` dimensions: [dim, count] float64."""
        dirs = torch.randn(dim, count, generator=self._directions, dtype=torch.float64)
        return dirs / dirs.norm(dim=0, keepdim=True)


def effective_nhood_size(height: int, width: int, nhood_size: int = NHOOD_SIZE) -> int:
    """The neighbourhood size used for images of this size: `nhood_size`, or for images smaller
    than it (4x4 in the first ProGAN phase) the largest odd size that fits."""
    size = min(nhood_size, height, width)
    return size if size % 2 == 1 else size - 1


def cut_descriptors(
    level: torch.Tensor,  # [N, C, H, W], one pyramid level
    ys: torch.Tensor,  # [N, K] centre rows
    xs: torch.Tensor,  # [N, K] centre columns
    nhood_size: int,
) -> torch.Tensor:
    """The `nhood_size`^2 neighbourhoods around the given centres of every image:
    [N * K, C, nhood_size, nhood_size], image-major, rows then columns."""
    n, c, h, w = level.shape
    half = nhood_size // 2
    if h < nhood_size or w < nhood_size:
        raise ValueError(f"{nhood_size}x{nhood_size} neighbourhoods do not fit in {h}x{w} images")
    k = ys.shape[1]
    offsets = torch.arange(-half, half + 1)
    rows = (ys[:, :, None] + offsets).to(level.device)  # [N, K, S]
    cols = (xs[:, :, None] + offsets).to(level.device)  # [N, K, S]
    images = torch.arange(n, device=level.device)
    channels = torch.arange(c, device=level.device)
    patches = level[
        images[:, None, None, None, None],
        channels[None, None, :, None, None],
        rows[:, :, None, :, None],
        cols[:, :, None, None, :],
    ]  # [N, K, C, S, S]
    return patches.reshape(n * k, c, nhood_size, nhood_size)


def sample_descriptors(
    level: torch.Tensor,  # [N, C, H, W], one pyramid level
    nhood_size: int,
    nhoods_per_image: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Cut `nhoods_per_image` random `nhood_size`^2 neighbourhoods out of every image (centres
    drawn from `generator` as `SWDRandomness.centres`): [N * K, C, S, S], image-major."""
    n, _, h, w = level.shape
    half = nhood_size // 2
    if h < nhood_size or w < nhood_size:
        raise ValueError(f"{nhood_size}x{nhood_size} neighbourhoods do not fit in {h}x{w} images")
    ys = torch.randint(half, h - half, (n, nhoods_per_image), generator=generator)
    xs = torch.randint(half, w - half, (n, nhoods_per_image), generator=generator)
    return cut_descriptors(level, ys, xs, nhood_size)


def normalize_descriptors(desc: torch.Tensor) -> torch.Tensor:
    """Normalise each colour channel of a descriptor set to zero mean and unit (population) std.

    Mean and std run over all descriptors and all pixels of the channel (official
    `finalize_descriptors`). A channel that is constant over the whole set keeps std 1 instead of
    dividing by zero (the official code gives NaN there). [M, C, S, S] -> [M, C*S*S].
    """
    mean = desc.mean(dim=(0, 2, 3), keepdim=True, dtype=torch.float64).to(desc.dtype)
    centred = desc - mean  # centre first: the std of centred values is accurate in float32
    std = centred.square().mean(dim=(0, 2, 3), keepdim=True, dtype=torch.float64).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std)).to(desc.dtype)
    return (centred / std).reshape(desc.shape[0], -1)


def project_sorted(points: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Projections of `points` [M, D] onto each direction of `dirs` [D, K], each sorted: [K, M].

    The [K, M] layout sorts along the contiguous dimension. On the CPU the fresh projection matrix
    is sorted in place by NumPy in parallel row blocks (its sort releases the GIL), about 3x faster
    than `torch.sort` with the identical result; elsewhere `torch.sort`.
    """
    proj = (dirs.T @ points.T).contiguous()  # [K, M]
    if proj.device.type != "cpu":
        return torch.sort(proj, dim=1).values
    array = proj.numpy()  # shares memory with proj
    blocks = [b for b in np.array_split(array, torch.get_num_threads()) if b.size]
    with ThreadPoolExecutor(max_workers=len(blocks)) as pool:
        list(pool.map(lambda block: block.sort(axis=1), blocks))
    return proj


def sliced_wasserstein_distance(
    a: torch.Tensor,  # [M, D] descriptors
    b: torch.Tensor,  # [M, D] descriptors
    *,
    dir_repeats: int = DIR_REPEATS,
    dirs_per_repeat: int = DIRS_PER_REPEAT,
    generator: torch.Generator | None = None,
    randomness: SWDRandomness | None = None,
) -> float:
    """Sliced Wasserstein-1 distance between two equal-size point sets (not scaled by 1e3).

    For each random unit direction, both sets are projected onto it and sorted; the mean absolute
    difference of the sorted projections is the exact 1-D Wasserstein-1 distance between the two
    empirical distributions. The result averages over directions and repeats. Directions come
    from `randomness.directions`, or are drawn from `generator` the same way.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"need two [M, D] sets of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if (generator is None) == (randomness is None):
        raise ValueError("give exactly one of generator and randomness")
    total = 0.0
    for _ in range(dir_repeats):
        if randomness is not None:
            dirs = randomness.directions(a.shape[1], dirs_per_repeat)
        else:
            dirs = torch.randn(
                a.shape[1], dirs_per_repeat, generator=generator, dtype=torch.float64
            )
            dirs = dirs / dirs.norm(dim=0, keepdim=True)
        dirs = dirs.to(device=a.device, dtype=a.dtype)
        proj_a = project_sorted(a, dirs)
        proj_b = project_sorted(b, dirs)
        total += (proj_a - proj_b).abs().mean(dtype=torch.float64).item()
    return total / dir_repeats


def _level_descriptors(
    images: torch.Tensor,  # [N, C, H, W] uint8 or float, any device
    level: int,
    num_levels: int,
    nhood_size: int,
    centres: tuple[torch.Tensor, torch.Tensor],  # [N, K] rows, [N, K] columns
    device: torch.device,
    batch_size: int,
) -> torch.Tensor:
    ys, xs = centres
    chunks = []
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        batch = images[start:stop].to(device=device, dtype=torch.float32)
        band = laplacian_level(batch, level, num_levels)
        chunks.append(cut_descriptors(band, ys[start:stop], xs[start:stop], nhood_size))
    return normalize_descriptors(torch.cat(chunks))


def swd_note(
    height: int, width: int, channels: int, patches: PatchSampling, nhood_size: int = NHOOD_SIZE
) -> str:
    """How an SWD of such images differs from an official evaluation ('' when it does not)."""
    notes = []
    if min(height, width) < SWD_MIN_RESOLUTION:
        size = effective_nhood_size(height, width, nhood_size)
        notes.append(
            f"{height}x{width} images are below the official {SWD_MIN_RESOLUTION}x"
            f"{SWD_MIN_RESOLUTION} (it scores no level there): one level, the image itself, "
            f"{size}x{size} neighbourhoods"
        )
    if channels == 1:
        notes.append(
            "grayscale: the official evaluation tiles it to RGB (147-value descriptors); here "
            "one channel (49 values); tiling scales each projection by the length of the summed "
            f"direction, {GRAY_TILING_FACTOR} on average, so official values are that much lower "
            "in expectation"
        )
    if patches == "shared":
        notes.append(
            "patches shared between the sets: identical sets give 0 and values are lower than "
            "official ones, which draw fresh patches per set"
        )
    return "; ".join(notes)


@torch.no_grad()
def sliced_wasserstein(
    real: torch.Tensor,  # [N, C, H, W], uint8 0..255 (as the official code feeds) or float
    fake: torch.Tensor,  # [N, C, H, W], same shape as real
    *,
    seed: int = 0,
    patches: PatchSampling = DEFAULT_PATCHES,
    nhood_size: int = NHOOD_SIZE,
    nhoods_per_image: int = NHOODS_PER_IMAGE,
    dir_repeats: int = DIR_REPEATS,
    dirs_per_repeat: int = DIRS_PER_REPEAT,
    min_resolution: int = SWD_MIN_RESOLUTION,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
    randomness: SWDRandomness | None = None,
) -> SWDResult:
    """SWD x1e3 between two image sets of the same size and count, per pyramid level and averaged.

    `patches="fresh"` (default) samples each set at its own positions like the official
    evaluation; `"shared"` at the same positions (identical sets give 0); see the module
    docstring. The pyramid runs from full resolution down to `min_resolution` (images smaller
    than that keep one level, the image itself); images smaller than the neighbourhood use the
    largest odd neighbourhood that fits (`effective_nhood_size`). Levels are keyed by their
    resolution, the longer image side as in `progan-dataset`; the shorter side decides how many
    levels there are. `device` defaults to the device of `real`. `randomness` replaces
    `SWDRandomness(seed, patches)` (its seed and mode must then equal `seed` and `patches`).
    """
    check_image_batch(real, "real")
    check_image_batch(fake, "fake")
    check_same_shape(real, fake)
    patches = check_patch_sampling(patches)
    if randomness is None:
        randomness = SWDRandomness(seed, patches)
    elif (randomness.seed, randomness.patches) != (seed, patches):
        raise ValueError(
            f"randomness has seed {randomness.seed} and patches '{randomness.patches}', but the "
            f"call asks for seed {seed} and patches '{patches}'"
        )
    run_device = torch.device(device) if device is not None else real.device
    n, c, h, w = real.shape
    num_levels = len(swd_resolutions(min(h, w), min_resolution))
    per_level: dict[int, float] = {}
    for level in bar(range(num_levels), total=num_levels, desc="SWD levels", unit="level"):
        size = effective_nhood_size(h >> level, w >> level, nhood_size)
        descriptors = []
        sets: tuple[tuple[SetName, torch.Tensor], ...] = (("real", real), ("fake", fake))
        for which, images in sets:
            centres = randomness.centres(
                level, which, n, nhoods_per_image, h >> level, w >> level, size
            )
            descriptors.append(
                _level_descriptors(
                    images,
                    level=level,
                    num_levels=num_levels,
                    nhood_size=size,
                    centres=centres,
                    device=run_device,
                    batch_size=batch_size,
                )
            )
        distance = sliced_wasserstein_distance(
            *descriptors,
            dir_repeats=dir_repeats,
            dirs_per_repeat=dirs_per_repeat,
            randomness=randomness,
        )
        per_level[max(h, w) >> level] = distance * SWD_SCALE
    average = sum(per_level.values()) / len(per_level)
    note = swd_note(h, w, c, patches, nhood_size)
    return SWDResult(per_level=per_level, average=average, patches=patches, note=note)


def swd_floor(
    real: torch.Tensor,  # [N, C, H, W] real images
    other: torch.Tensor | None = None,  # a second real set of the same shape, or None
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
) -> SWDResult:
    """The real-vs-real floor: SWD of `real` against `other` (default: `real` itself) with fresh
    patches per set, as the official evaluation's second real pass ("Reals2") measures it. No
    generator can be expected to score below it with the same number of images."""
    return sliced_wasserstein(
        real,
        real if other is None else other,
        seed=seed,
        patches="fresh",
        device=device,
        batch_size=batch_size,
    )
