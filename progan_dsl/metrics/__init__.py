"""Image-quality metrics for generated images, and their registry.

Owns the metric names users type (`swd`, `msssim`, `fid`, `kid`), what each one needs, and
`evaluate`, which runs several metrics on one real and one generated set and returns a flat dict of
floats such as {"swd_avg": ..., "swd_16": ..., "msssim": ..., "fid": ...}. The metrics themselves
live in `swd.py` (paper Section 5), `msssim.py` (paper Section 5) and `fid.py` (FID, KID).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from progan_dsl.errors import UserError
from progan_dsl.metrics.fid import FeatureStats, fid_from_stats, kernel_inception_distance
from progan_dsl.metrics.images import check_image_batch
from progan_dsl.metrics.msssim import NUM_PAIRS, ms_ssim_diversity
from progan_dsl.metrics.swd import sliced_wasserstein


@dataclass
class EvalContext:
    """The inputs of one `evaluate` call; Inception statistics are computed once and shared by
    FID and KID."""

    real: torch.Tensor | None  # [N, C, H, W] uint8
    fake: torch.Tensor  # [N, C, H, W] uint8
    device: torch.device
    seed: int
    msssim_pairs: int = NUM_PAIRS
    real_stats: FeatureStats | None = None
    fake_stats: FeatureStats | None = None

    def require_real(self, metric: str) -> torch.Tensor:
        if self.real is None:
            raise UserError(f"metric '{metric}' compares against real images, but none were given")
        return self.real

    def real_features(self, metric: str) -> FeatureStats:
        if self.real_stats is None:
            self.real_stats = FeatureStats.from_images(
                self.require_real(metric), device=self.device
            )
        return self.real_stats

    def fake_features(self) -> FeatureStats:
        if self.fake_stats is None:
            self.fake_stats = FeatureStats.from_images(self.fake, device=self.device)
        return self.fake_stats


@dataclass(frozen=True)
class Metric:
    """A registered metric: its name, one line for `--help`, and how to compute it."""

    name: str
    description: str
    compute: Callable[[EvalContext], dict[str, float]]


def _swd(ctx: EvalContext) -> dict[str, float]:
    real = ctx.require_real("swd")
    n = min(real.shape[0], ctx.fake.shape[0])  # SWD compares equal-size descriptor sets
    result = sliced_wasserstein(real[:n], ctx.fake[:n], seed=ctx.seed, device=ctx.device)
    return result.as_dict("swd")


def _msssim(ctx: EvalContext) -> dict[str, float]:
    return {"msssim": ms_ssim_diversity(ctx.fake, ctx.msssim_pairs, ctx.seed, device=ctx.device)}


def _fid(ctx: EvalContext) -> dict[str, float]:
    return {"fid": fid_from_stats(ctx.real_features("fid"), ctx.fake_features())}


def _kid(ctx: EvalContext) -> dict[str, float]:
    real = ctx.real_features("kid").features
    kid = kernel_inception_distance(
        real, ctx.fake_features().features, seed=ctx.seed, device=ctx.device
    )
    return {"kid": kid}


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "swd",
            "sliced Wasserstein distance x1e3 per pyramid level and their average",
            _swd,
        ),
        Metric("msssim", "MS-SSIM of random pairs of generated images (diversity)", _msssim),
        Metric("fid", "Frechet Inception distance", _fid),
        Metric("kid", "kernel Inception distance (unbiased MMD^2)", _kid),
    )
}


def resolve_metric_names(names: Sequence[str]) -> list[str]:
    """Normalise (strip, lower-case, drop repeats) and check metric names; an unknown name raises
    `UserError` with a did-you-mean and the list of valid names."""
    resolved: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"unknown metric '{raw}'{hint}; valid metrics: {', '.join(METRICS)}")
        if name not in resolved:
            resolved.append(name)
    if not resolved:
        raise UserError(f"no metric given; valid metrics: {', '.join(METRICS)}")
    return resolved


def evaluate(
    names: Sequence[str],
    real: torch.Tensor | None,  # [N, C, H, W] uint8; only msssim works without it
    fake: torch.Tensor,  # [N, C, H, W] uint8
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    msssim_pairs: int = NUM_PAIRS,
    real_stats: FeatureStats | None = None,
) -> dict[str, float]:
    """Run the named metrics and return one flat dict of floats, in the order of `names`.

    `msssim_pairs` random pairs of generated images are scored (paper: 10,000). `real_stats` (e.g.
    from `cached_real_stats`) replaces computing the real Inception features for FID and KID. SWD
    uses the first min(N_real, N_fake) images of each set.
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
        real_stats=real_stats,
    )
    results: dict[str, float] = {}
    for name in resolved:
        results.update(METRICS[name].compute(ctx))
    return results


__all__ = ["METRICS", "EvalContext", "Metric", "evaluate", "resolve_metric_names"]
