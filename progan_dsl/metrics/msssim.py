"""Multi-scale structural similarity (MS-SSIM, Wang, Simoncelli and Bovik 2003) and the paper's
diversity measure built on it: the mean MS-SSIM of random pairs of generated images (lower means
more varied output; paper Section 5 and Figure 9 use 10,000 pairs).

Owns the MS-SSIM computation and the scale rule for small images. Per scale, SSIM statistics come
from an 11x11 Gaussian window (sigma 1.5) over the valid region of each colour channel, with
K1 = 0.01 and K2 = 0.03 on the 0..255 range; between scales the images are 2x2 averaged. The
contrast-structure terms of the finer scales and the full SSIM of the coarsest scale are clipped
at 0 and combined as a weighted geometric product with the standard weights
[0.0448, 0.2856, 0.3001, 0.2363, 0.1333], as in the TensorFlow port the official ProGAN code uses.

Scale rule (for the small images of progressive training): use the five standard scales, but drop
the coarsest ones so the coarsest scale kept is at least `MIN_SCALE_SIZE` = 8 pixels; when scales
are dropped, the remaining weights are renormalised to sum to 1. A scale smaller than the 11x11
window uses a window as large as the scale, with sigma scaled by the same factor (the official
rule). 8 is the coarsest size the official code reaches at 128x128, the paper's Figure 9 setting,
so at 128x128 and above this is exactly the official computation; at 256 and above every scale
uses the full 11x11 window. Smaller images get fewer scales: 64 -> 4, 32 -> 3, 16 -> 2, 8 and
below -> 1 (plain SSIM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from progan_dsl.metrics.images import check_image_batch, check_same_shape

# Wang et al. 2003, Section 3.2 (they sum to 1.0001, as published).
MSSSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11  # Gaussian window, Wang et al. 2003/2004
WINDOW_SIGMA = 1.5
K1 = 0.01  # stabilising constants, Wang et al. 2004
K2 = 0.03
MAX_VAL = 255.0  # dynamic range of uint8 images
MIN_SCALE_SIZE = 8  # see the scale rule in the module docstring
NUM_PAIRS = 10_000  # paper Section 5: 10k pairs (official log name "metric-msssim-20k")
BATCH_SIZE = 256  # pairs per batch in `ms_ssim_diversity`; does not change the result


def num_scales(size: int) -> int:
    """Number of scales for images whose smaller side is `size` (see the module's scale rule)."""
    scales = 1
    while scales < len(MSSSIM_WEIGHTS) and size >> scales >= MIN_SCALE_SIZE:
        scales += 1
    return scales


def scale_weights(scales: int) -> list[float]:
    """The standard weights for `scales` scales: all five as published, or the first `scales`
    renormalised to sum to 1."""
    if scales == len(MSSSIM_WEIGHTS):
        return list(MSSSIM_WEIGHTS)
    kept = MSSSIM_WEIGHTS[:scales]
    return [w / sum(kept) for w in kept]


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
    a: torch.Tensor, b: torch.Tensor, max_val: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image pair at one scale: ([B], [B])."""
    size = min(WINDOW_SIZE, a.shape[-2], a.shape[-1])
    taps = gaussian_taps(size, WINDOW_SIGMA * size / WINDOW_SIZE).to(a)
    # One filtering pass over the five maps the statistics need: [B, 5C, H', W'].
    stats = _filter_valid(torch.cat([a, b, a * a, b * b, a * b], dim=1), taps)
    mu_a, mu_b, sq_a, sq_b, ab = stats.chunk(5, dim=1)
    var_a = sq_a - mu_a * mu_a
    var_b = sq_b - mu_b * mu_b
    cov = ab - mu_a * mu_b
    c1 = (K1 * max_val) ** 2
    c2 = (K2 * max_val) ** 2
    cs_map = (2 * cov + c2) / (var_a + var_b + c2)
    ssim_map = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1) * cs_map
    return ssim_map.mean(dim=(1, 2, 3)), cs_map.mean(dim=(1, 2, 3))


@torch.no_grad()
def ms_ssim(a: torch.Tensor, b: torch.Tensor, *, max_val: float = MAX_VAL) -> torch.Tensor:
    """MS-SSIM of each pair (a[i], b[i]) of two [N, C, H, W] batches (uint8 or float on the 0..255
    scale); returns [N] float64 values in [0, 1], exactly 1 for identical images.

    Filtering runs in float32 (several times faster than float64 on CPUs; values agree with a
    float64 computation to about 1e-5); the per-scale means and their product in float64.
    """
    check_image_batch(a, "a")
    check_image_batch(b, "b")
    check_same_shape(a, b)
    a, b = a.float(), b.float()
    scales = num_scales(min(a.shape[-2:]))
    weights = torch.tensor(scale_weights(scales), dtype=torch.float64, device=a.device)
    factors = []
    for scale in range(scales):
        ssim, cs = _ssim_and_cs(a, b, max_val)
        # Finer scales contribute contrast-structure, the coarsest scale the full SSIM.
        factors.append((ssim if scale == scales - 1 else cs).double().clamp(min=0))
        if scale < scales - 1:
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


def ms_ssim_diversity(
    images: torch.Tensor,  # [N, C, H, W] generated images, uint8 or float on the 0..255 scale
    num_pairs: int = NUM_PAIRS,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
) -> float:
    """Mean MS-SSIM over `num_pairs` random pairs of distinct images of one set (the paper's
    diversity measure; pairs are drawn with replacement)."""
    check_image_batch(images, "images")
    run_device = torch.device(device) if device is not None else images.device
    first, second = random_pairs(images.shape[0], num_pairs, seed)
    total = 0.0
    for start in range(0, num_pairs, batch_size):
        i, j = first[start : start + batch_size], second[start : start + batch_size]
        values = ms_ssim(images[i].to(run_device), images[j].to(run_device))
        total += values.sum().item()
    return total / num_pairs
