"""The metric vocabulary users type, torch-free (so `progan-metrics --help` is instant).

Owns the metric names with their one-line descriptions and what each needs, the SWD patch
sampling modes, and the name check with did-you-mean. The computations are registered against
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
    "MetricInfo",
    "PatchSampling",
    "resolve_metric_names",
]
