"""`evaluate`: several metrics on one real and one generated set, with notes.

Runs the metrics named in `registry.METRIC_INFO` and returns `Results`: a flat dict of floats such
as {"swd_avg": ..., "swd_16": ..., "msssim": ..., "fid": ...} with `notes`, the ways a value
differs from the official definition (e.g. MS-SSIM of images too small for five scales).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from progan_dsl.errors import UserError
from progan_dsl.metrics.fid import FeatureStats, fid_from_stats, kernel_inception_distance
from progan_dsl.metrics.images import check_image_batch
from progan_dsl.metrics.msssim import NUM_PAIRS, ms_ssim_diversity_result
from progan_dsl.metrics.registry import (
    DEFAULT_PATCHES,
    METRIC_INFO,
    PatchSampling,
    resolve_metric_names,
)
from progan_dsl.metrics.swd import check_patch_sampling, sliced_wasserstein, swd_floor


class Results(dict[str, float]):
    """Metric values by name, plus `notes` on how they differ from the official definitions."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)


@dataclass
class EvalContext:
    """The inputs of one `evaluate` call; Inception statistics are computed once and shared by
    FID and KID."""

    real: torch.Tensor | None  # [N, C, H, W] uint8
    fake: torch.Tensor  # [N, C, H, W] uint8
    device: torch.device
    seed: int
    msssim_pairs: int = NUM_PAIRS
    swd_patches: PatchSampling = DEFAULT_PATCHES
    real_stats: FeatureStats | None = None
    fake_stats: FeatureStats | None = None

    def require_real(self, metric: str) -> torch.Tensor:
        if self.real is None:
            raise UserError(f"metric '{metric}' compares against real images, but none were given")
        return self.real

    def real_features(self, metric: str) -> FeatureStats:
        if self.real_stats is None:
            self.real_stats = FeatureStats.from_images(
                self.require_real(metric), device=self.device, desc="Inception features, real"
            )
        return self.real_stats

    def fake_features(self) -> FeatureStats:
        if self.fake_stats is None:
            self.fake_stats = FeatureStats.from_images(
                self.fake, device=self.device, desc="Inception features, generated"
            )
        return self.fake_stats


@dataclass(frozen=True)
class Metric:
    """A registered metric: its name, one line for `--help`, and how to compute it."""

    name: str
    description: str
    compute: Callable[[EvalContext, Results], None]


def _swd(ctx: EvalContext, out: Results) -> None:
    real = ctx.require_real("swd")
    n = min(real.shape[0], ctx.fake.shape[0])  # SWD compares equal-size descriptor sets
    result = sliced_wasserstein(
        real[:n], ctx.fake[:n], seed=ctx.seed, patches=ctx.swd_patches, device=ctx.device
    )
    out.update(result.as_dict("swd"))
    out.note(result.note)


def _swd_floor(ctx: EvalContext, out: Results) -> None:
    """Real against real with fresh patches (the official second real pass): the floor no
    generator scores below with as many images. Half the reals against the other half."""
    real = ctx.require_real("swd_floor")
    half = real.shape[0] // 2
    if half < 1:
        raise UserError("swd_floor needs at least 2 real images")
    result = swd_floor(real[:half], real[half : 2 * half], seed=ctx.seed, device=ctx.device)
    out.update(result.as_dict("swd_floor"))
    out.note(result.note)


def _msssim(ctx: EvalContext, out: Results) -> None:
    result = ms_ssim_diversity_result(ctx.fake, ctx.msssim_pairs, ctx.seed, device=ctx.device)
    out.update(result.as_dict("msssim"))
    out.note(result.note)


def _fid(ctx: EvalContext, out: Results) -> None:
    out["fid"] = fid_from_stats(ctx.real_features("fid"), ctx.fake_features())


def _kid(ctx: EvalContext, out: Results) -> None:
    real = ctx.real_features("kid").features
    out["kid"] = kernel_inception_distance(
        real, ctx.fake_features().features, seed=ctx.seed, device=ctx.device
    )


_COMPUTE: dict[str, Callable[[EvalContext, Results], None]] = {
    "swd": _swd,
    "swd_floor": _swd_floor,
    "msssim": _msssim,
    "fid": _fid,
    "kid": _kid,
}
METRICS: dict[str, Metric] = {
    name: Metric(info.name, info.description, _COMPUTE[name]) for name, info in METRIC_INFO.items()
}


def evaluate(
    names: Sequence[str],
    real: torch.Tensor | None,  # [N, C, H, W] uint8; only msssim works without it
    fake: torch.Tensor,  # [N, C, H, W] uint8
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    msssim_pairs: int = NUM_PAIRS,
    swd_patches: str = DEFAULT_PATCHES,
    real_stats: FeatureStats | None = None,
) -> Results:
    """Run the named metrics and return one flat dict of floats, in the order of `names`, with
    notes (`Results.notes`).

    `msssim_pairs` random pairs of generated images are scored (paper: 10,000). `swd_patches`:
    'fresh' (each set its own patch positions, the official evaluation) or 'shared' (see
    `swd.py`). `real_stats` (e.g. from `cached_real_stats`) replaces computing the real Inception
    features for FID and KID. SWD uses the first min(N_real, N_fake) images of each set.
    """
    resolved = resolve_metric_names(names)
    check_image_batch(fake, "fake")
    if real is not None:
        check_image_batch(real, "real")
    ctx = EvalContext(
        real=real,
        fake=fake,
        device=torch.device(device),
        seed=seed,
        msssim_pairs=msssim_pairs,
        swd_patches=check_patch_sampling(swd_patches),
        real_stats=real_stats,
    )
    results = Results()
    for name in resolved:
        METRICS[name].compute(ctx, results)
    return results


__all__ = ["METRICS", "EvalContext", "Metric", "Results", "evaluate", "resolve_metric_names"]
