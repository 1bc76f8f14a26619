"""The metric vocabulary users type, torch-free (so `progan-metrics --help` is instant).

Owns the metric names with their one-line descriptions and what each needs, the named presets
(`PRESETS`: a metric with fixed image counts, as `fid50k_full`), the SWD patch sampling modes,
and the name checks with did-you-mean. The computations are registered against
these names in `progan_dsl.metrics`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from progan_dsl.errors import UserError

PatchSampling = Literal["fresh", "shared"]
PATCH_SAMPLINGS: tuple[str, ...] = get_args(PatchSampling)
DEFAULT_PATCHES: PatchSampling = "fresh"  # the official evaluation's behaviour (see swd.py)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    description: str
    needs_real: bool  # compares against real images (progan-metrics --data)


METRIC_INFO: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "swd", "sliced Wasserstein distance x1e3 per pyramid level and their average", True
        ),
        MetricInfo(
            "swd_floor",
            "SWD of half the real images against the other half (fresh patches): the floor",
            True,
        ),
        MetricInfo("msssim", "MS-SSIM of random pairs of generated images (diversity)", False),
        MetricInfo("fid", "Frechet Inception distance", True),
        MetricInfo("kid", "kernel Inception distance (unbiased MMD^2)", True),
    )
}


@dataclass(frozen=True)
class Preset:
    """A metric with the image counts that make its values comparable between runs."""

    name: str
    metric: str  # a METRIC_INFO name
    num_fake: int  # generated images
    num_real: int | None  # real images (a fixed subset); None: every image of the level
    source: str  # where the preset comes from

    @property
    def pairs(self) -> int:
        """MS-SSIM pairs: one per two images (official metric-msssim-20k: 10,000 pairs)."""
        return self.num_fake // 2

    def describe(self) -> str:
        if not METRIC_INFO[self.metric].needs_real:
            pairs = f"{self.pairs:,} pairs of {self.num_fake:,} generated"
            return f"{self.metric}, {pairs} ({self.source})"
        real = "all real images" if self.num_real is None else f"{self.num_real:,} real"
        return f"{self.metric}, {self.num_fake:,} generated vs {real} ({self.source})"


# Official progressive_growing_of_gans config.py metric runs (metric-swd-16k, metric-fid-10k,
# metric-msssim-20k: num_images 16384, 10000, 20000, the same count of reals) and StyleGAN2-ADA's
# metrics/metric_main.py (fid50k_full, kid50k_full: 50,000 generated against the whole dataset).
# fid5k is the CPU-sized one: Inception-v3 runs at about 4.5 images/s on two CPU cores
# (docs/metrics.md), so its 10,000 images take under an hour there, fid50k_full several.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("fid50k_full", "fid", 50_000, None, "StyleGAN2-ADA fid50k_full"),
        Preset("kid50k_full", "kid", 50_000, None, "StyleGAN2-ADA kid50k_full"),
        Preset("fid10k", "fid", 10_000, 10_000, "official ProGAN metric-fid-10k"),
        Preset("fid5k", "fid", 5_000, 5_000, "a CPU-sized FID"),
        Preset("swd16k", "swd", 16_384, 16_384, "official ProGAN metric-swd-16k, Section 5"),
        Preset("msssim20k", "msssim", 20_000, None, "official ProGAN metric-msssim-20k"),
    )
}


def resolve_presets(names: Sequence[str]) -> list[Preset]:
    """Check preset names (as `resolve_metric_names`); repeats dropped, order kept."""
    resolved: list[Preset] = []
    for raw in names:
        name = raw.strip().lower()
        if name not in PRESETS:
            close = difflib.get_close_matches(name, PRESETS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"unknown preset '{raw}'{hint}; valid presets: {', '.join(PRESETS)}")
        if PRESETS[name] not in resolved:
            resolved.append(PRESETS[name])
    if not resolved:
        raise UserError(f"no preset given; valid presets: {', '.join(PRESETS)}")
    return resolved


def preset_key(preset: Preset, key: str) -> str:
    """A result key renamed after its preset: fid -> fid50k_full, swd_avg -> swd16k_avg."""
    return preset.name + key[len(preset.metric) :] if key.startswith(preset.metric) else key


def resolve_metric_names(names: Sequence[str]) -> list[str]:
    """Normalise (strip, lower-case, drop repeats) and check metric names; an unknown name raises
    `UserError` with a did-you-mean and the list of valid names."""
    resolved: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if name not in METRIC_INFO:
            close = difflib.get_close_matches(name, METRIC_INFO, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(
                f"unknown metric '{raw}'{hint}; valid metrics: {', '.join(METRIC_INFO)}"
            )
        if name not in resolved:
            resolved.append(name)
    if not resolved:
        raise UserError(f"no metric given; valid metrics: {', '.join(METRIC_INFO)}")
    return resolved


__all__ = [
    "DEFAULT_PATCHES",
    "METRIC_INFO",
    "PATCH_SAMPLINGS",
    "PRESETS",
    "MetricInfo",
    "PatchSampling",
    "Preset",
    "preset_key",
    "resolve_metric_names",
    "resolve_presets",
]
