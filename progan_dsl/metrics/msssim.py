"""Multi-scale structural similarity (MS-SSIM, Wang, Simoncelli and Bovik 2003) and the paper's
diversity measure built on it: the mean MS-SSIM of random pairs of generated images (lower means
more varied output; paper Section 5 and Figure 9 use 10,000 pairs).

Owns the MS-SSIM computation and its scale plan (`msssim_scales`): which scales, windows and
weights are used for an image size, and whether that is the official definition.

The official definition (tkarras/progressive_growing_of_gans, metrics/ms_ssim.py, a port of the
TensorFlow models `msssim.py`): always five scales; between scales a 2x2 average. At each scale of
h x w pixels the SSIM statistics come from a Gaussian window of side `min(11, h, w)` with sigma
`1.5 * side / 11` (MATLAB `fspecial`, centred between pixels for even sides) over the valid region
of each colour channel, K1 = 0.01 and K2 = 0.03 on the 0..255 range. The mean contrast-structure
terms of scales 1-4 and the mean SSIM of scale 5 are clipped at 0 and combined as a weighted
product with the published weights [0.0448, 0.2856, 0.3001, 0.2363, 0.1333] (sum 1.0001). At
16x16 the scales are 16, 8, 4, 2 and 1 pixels; at 256x256 and above every window is 11x11.

That definition holds exactly for images whose sides are multiples of 16 (the four 2x2 averages
are exact). Elsewhere `msssim_scales` says what is computed instead, in `note`:
- sides below 16 (the first phases of progressive training): the official code fails there (its
  fifth scale would have 0 pixels). Here the scales go down to 1 pixel and stop: 8 -> 4 scales
  (8, 4, 2, 1), 4 -> 3, 2 -> 2, 1 -> 1 (plain SSIM), with the first weights renormalised to sum 1.
  The official function with these weights (its `weights` argument) computes the same value.
- a side that is not a multiple of 16 meets an odd size on the way down, which the official 2x2
  average cannot halve (it fails, or for 3 pixels mixes rows by broadcasting); here the last row
  or column is dropped, as torch's `avg_pool2d` does.

Filtering runs in float32 on values centred per image and channel (variances and covariance do
not change under such shifts; centring keeps float32 cancellation small); the per-scale
means and their product are float64. Agreement with a float64 computation of the definition is
checked to 1e-4 relative in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from progan_dsl.metrics.images import check_image_batch, check_same_shape
from progan_dsl.metrics.progress import bar
from progan_dsl.paper import MSSSIM_PAIRS

# Wang et al. 2003, Section 3.2, as the official ms_ssim.py uses them (they sum to 1.0001).
MSSSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11  # Gaussian window side, Wang et al. 2004; official `filter_size=11`
WINDOW_SIGMA = 1.5  # official `filter_sigma=1.5`
K1 = 0.01  # stabilising constants, Wang et al. 2004; official `k1`, `k2`
K2 = 0.03
MAX_VAL = 255.0  # dynamic range of uint8 images; official `max_val=255`
NUM_SCALES = len(MSSSIM_WEIGHTS)  # the official code always computes five scales
# Four exact 2x2 halvings need sides divisible by 2**4 = 16 (official: defined from 16x16 up).
OFFICIAL_SIDE_MULTIPLE = 2 ** (NUM_SCALES - 1)
NUM_PAIRS = MSSSIM_PAIRS  # paper Section 5: 10k pairs
BATCH_SIZE = 256  # pairs per batch in `ms_ssim_diversity`; does not change the result


@dataclass(frozen=True)
class MSSSIMScales:
    """The scales MS-SSIM computes for `height` x `width` images, finest first.

    `official` is True when this is exactly the official five-scale definition; otherwise `note`
    says in one sentence what is computed instead and how it differs (empty when official).
    """

    height: int
    width: int
    sizes: tuple[tuple[int, int], ...]  # (h, w) of each scale
    windows: tuple[int, ...]  # Gaussian window side per scale: min(11, h, w)
    weights: tuple[float, ...]  # exponent of each scale's factor
    official: bool
    note: str

    @property
    def count(self) -> int:
        return len(self.sizes)

    def describe(self) -> str:
        """One line for reports, e.g.
        '5 scales 64/32/16/8/4 px, windows 11/11/11/8/4 (official)'."""
        sizes = "/".join(str(h) if h == w else f"{h}x{w}" for h, w in self.sizes)
        windows = "/".join(map(str, self.windows))
        tail = "official" if self.official else "not the official definition"
        return f"{self.count} scales {sizes} px, windows {windows} ({tail})"


def scale_weights(scales: int) -> list[float]:
    """The weights for `scales` scales: all five as published, or the first `scales`
    renormalised to sum to 1 (small images)."""
    if not 1 <= scales <= NUM_SCALES:
        raise ValueError(f"scales must be in 1..{NUM_SCALES}, got {scales}")
    if scales == NUM_SCALES:
        return list(MSSSIM_WEIGHTS)
    kept = MSSSIM_WEIGHTS[:scales]
    return [w / sum(kept) for w in kept]


def msssim_scales(height: int, width: int) -> MSSSIMScales:
    """The scale plan for `height` x `width` images (see the module docstring for the rule)."""
    if height < 1 or width < 1:
        raise ValueError(f"MS-SSIM needs images of at least 1x1 pixels, got {height}x{width}")
    sizes = [(height, width)]
    while len(sizes) < NUM_SCALES and min(sizes[-1]) >= 2:
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    count = len(sizes)
    windows = tuple(min(WINDOW_SIZE, h, w) for h, w in sizes)
    odd = [f"{h}x{w}" for h, w in sizes[:-1] if h % 2 or w % 2]
    official = count == NUM_SCALES and not odd
    shape = f"{height}x{width}"
    if official:
        note = ""
    elif count < NUM_SCALES:
        note = (
            f"{shape} images: the official MS-SSIM needs at least 16x16 (five scales, the "
            f"coarsest 1 pixel; its code fails below); computed {count} scale(s) down to 1 pixel "
            f"with the first {count} weights renormalised to sum 1; not comparable with official "
            f"values or with other image sizes"
        )
    else:
        note = (
            f"{shape} images: sides are not multiples of 16, so the 2x2 average meets an odd "
            f"size ({', '.join(odd)}) that the official code cannot halve; the last row/column "
            f"is dropped there, so values differ slightly from any official run"
        )
    return MSSSIMScales(
        height=height,
        width=width,
        sizes=tuple(sizes),
        windows=windows,
        weights=tuple(scale_weights(count)),
        official=official,
        note=note,
    )


def gaussian_taps(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps centred on the window; their outer product is MATLAB's
    `fspecial('gaussian', size, sigma)` (also for even sizes, centred between two pixels)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def _filter_valid(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of every channel over the valid region: [B, C, H, W]."""
    c = x.shape[1]
    size = taps.numel()
    x = F.conv2d(x, taps.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv2d(x, taps.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


def _ssim_and_cs(
    a: torch.Tensor, b: torch.Tensor, window: int, max_val: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image pair at one scale: ([B], [B])."""
    taps = gaussian_taps(window, WINDOW_SIGMA * window / WINDOW_SIZE).to(a)
    # Shifting each image channel by its own mean changes neither variances nor the covariance
    # and keeps the float32 differences E[x^2] - E[x]^2 accurate; the means get the shift back.
    shift_a, shift_b = a.mean(dim=(2, 3), keepdim=True), b.mean(dim=(2, 3), keepdim=True)
    a, b = a - shift_a, b - shift_b
    # One filtering pass over the five maps the statistics need: [B, 5C, H', W'].
    stats = _filter_valid(torch.cat([a, b, a * a, b * b, a * b], dim=1), taps)
    mu_a, mu_b, sq_a, sq_b, ab = stats.chunk(5, dim=1)
    var_a = sq_a - mu_a * mu_a
    var_b = sq_b - mu_b * mu_b
    cov = ab - mu_a * mu_b
    mu_a, mu_b = mu_a + shift_a, mu_b + shift_b
    c1 = (K1 * max_val) ** 2
    c2 = (K2 * max_val) ** 2
    cs_map = (2 * cov + c2) / (var_a + var_b + c2)
    ssim_map = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1) * cs_map
    return ssim_map.mean(dim=(1, 2, 3), dtype=torch.float64), cs_map.mean(
        dim=(1, 2, 3), dtype=torch.float64
    )


@torch.no_grad()
def ms_ssim(a: torch.Tensor, b: torch.Tensor, *, max_val: float = MAX_VAL) -> torch.Tensor:
    """MS-SSIM of each pair (a[i], b[i]) of two [N, C, H, W] batches (uint8 or float on the 0..255
    scale); returns [N] float64 values in [0, 1], exactly 1 for identical images.

    The scales follow `msssim_scales(H, W)`: the official definition for sides that are
    multiples of 16, otherwise what its `note` says.
    """
    check_image_batch(a, "a")
    check_image_batch(b, "b")
    check_same_shape(a, b)
    a, b = a.float(), b.float()
    plan = msssim_scales(a.shape[-2], a.shape[-1])
    weights = torch.tensor(plan.weights, dtype=torch.float64, device=a.device)
    factors = []
    for scale, window in enumerate(plan.windows):
        ssim, cs = _ssim_and_cs(a, b, window, max_val)
        # Finer scales contribute contrast-structure, the coarsest scale the full SSIM.
        factors.append((ssim if scale == plan.count - 1 else cs).clamp(min=0))
        if scale < plan.count - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return torch.prod(torch.stack(factors) ** weights[:, None], dim=0)


def random_pairs(num_images: int, num_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`num_pairs` random index pairs (i, j) with i != j, uniform over ordered pairs."""
    if num_images < 2:
        raise ValueError(f"need at least 2 images to form pairs, got {num_images}")
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(num_images, (num_pairs,), generator=generator)
    second = torch.randint(num_images - 1, (num_pairs,), generator=generator)
    return first, second + (second >= first).long()


@dataclass(frozen=True)
class MSSSIMDiversity:
    """Mean MS-SSIM over `num_pairs` random pairs, with the scale plan it used (`scales.note`
    says how it differs from the official definition, empty when it does not)."""

    value: float
    num_pairs: int
    scales: MSSSIMScales

    @property
    def note(self) -> str:
        return self.scales.note

    def as_dict(self, key: str = "msssim") -> dict[str, float]:
        return {key: self.value}


def ms_ssim_diversity_result(
    images: torch.Tensor,  # [N, C, H, W] generated images, uint8 or float on the 0..255 scale
    num_pairs: int = NUM_PAIRS,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
) -> MSSSIMDiversity:
    """Mean MS-SSIM over `num_pairs` random pairs of distinct images of one set (the paper's
    diversity measure; pairs are drawn with replacement), with its scale plan."""
    check_image_batch(images, "images")
    run_device = torch.device(device) if device is not None else images.device
    first, second = random_pairs(images.shape[0], num_pairs, seed)
    total = 0.0
    starts = range(0, num_pairs, batch_size)
    sizes = (min(batch_size, num_pairs - start) for start in starts)
    for start in bar(starts, total=num_pairs, desc="MS-SSIM pairs", unit="pair", sizes=sizes):
        i, j = first[start : start + batch_size], second[start : start + batch_size]
        values = ms_ssim(images[i].to(run_device), images[j].to(run_device))
        total += values.sum().item()
    plan = msssim_scales(images.shape[-2], images.shape[-1])
    return MSSSIMDiversity(value=total / num_pairs, num_pairs=num_pairs, scales=plan)


def ms_ssim_diversity(
    images: torch.Tensor,  # [N, C, H, W] generated images, uint8 or float on the 0..255 scale
    num_pairs: int = NUM_PAIRS,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
) -> float:
    """`ms_ssim_diversity_result(...).value`: the mean MS-SSIM of random pairs."""
    return ms_ssim_diversity_result(
        images, num_pairs, seed, device=device, batch_size=batch_size
    ).value
