"""Metric speed: SWD of 1,000 vs 1,000 images at 64x64 RGB, MS-SSIM of 1,000 pairs at 64x64 and
Inception feature extraction (the cost of FID/KID) at 32x32.

Inputs are the synthetic textures of `progan_dsl.metrics.synthetic` (content does not change the
cost). SWD and MS-SSIM are timed without a warm-up (each call is seconds long); feature extraction
after one warm-up batch (TorchScript optimises on its first calls). Reports the median over
`--repeats`. Target on a 2-core CPU: SWD under 30 s. Writes `benchmarks/results/metrics.json`.

    progan-bench metrics -- [--quick] [--repeats 3] [--device cpu] [--json FILE]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from progan_dsl.errors import UserError
from progan_dsl.metrics.inception import inception_features, load_inception
from progan_dsl.metrics.msssim import ms_ssim_diversity
from progan_dsl.metrics.swd import SWDResult, sliced_wasserstein
from progan_dsl.metrics.synthetic import textures

from .common import (
    add_output,
    add_threads,
    apply_threads,
    bench_parser,
    median_time,
    print_table,
    save,
)

FULL = {"swd_images": 1000, "msssim_pairs": 1000, "fid_images": 64}
QUICK = {"swd_images": 200, "msssim_pairs": 200, "fid_images": 16}


def _bench_swd(num: int, device: str, repeats: int) -> dict[str, Any]:
    real = textures(num, 64, seed=0)
    fake = textures(num, 64, seed=1)
    results: list[SWDResult] = []
    seconds = median_time(
        lambda: results.append(sliced_wasserstein(real, fake, device=device)),
        repeats=repeats,
        warmup=0,
    )
    return {
        "metric": "swd",
        "work": f"{num} vs {num} images, 64x64x3, {len(results[-1].per_level)} levels",
        "seconds": seconds,
        "throughput": f"{2 * num / seconds:.0f} img/s",
        "value": results[-1].average,
    }


def _bench_msssim(pairs: int, device: str, repeats: int) -> dict[str, Any]:
    images = textures(1000, 64, seed=2)
    values: list[float] = []
    seconds = median_time(
        lambda: values.append(ms_ssim_diversity(images, pairs, device=device)),
        repeats=repeats,
        warmup=0,
    )
    return {
        "metric": "msssim",
        "work": f"{pairs} pairs of 1000 images, 64x64x3",
        "seconds": seconds,
        "throughput": f"{pairs / seconds:.0f} pairs/s",
        "value": values[-1],
    }


def _bench_features(num: int, device: str, repeats: int) -> dict[str, Any]:
    images = textures(num, 32, seed=3)
    try:
        load_inception(device)
    except UserError as err:
        return {"metric": "fid features", "work": f"skipped: {err}"}
    seconds = median_time(
        lambda: inception_features(images, device=device), repeats=repeats, warmup=1
    )
    return {
        "metric": "fid features",
        "work": f"{num} images 32x32x3 -> 299x299, batch 32",
        "seconds": seconds,
        "throughput": f"{num / seconds:.1f} img/s",
        "value": None,
    }


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = bench_parser("metrics", __doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per workload (median)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_threads(parser)
    add_output(parser, "metrics")
    args = parser.parse_args(argv)
    threads = apply_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    rows = [
        _bench_swd(sizes["swd_images"], args.device, args.repeats),
        _bench_msssim(sizes["msssim_pairs"], args.device, args.repeats),
        _bench_features(sizes["fid_images"], args.device, args.repeats),
    ]
    print_table(rows, ["metric", "work", "seconds", "throughput", "value"])
    payload = {
        "threads": threads,
        "benchmark": "metrics",
        "quick": args.quick,
        "device": args.device,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # The machine may be shared: a load above the core count means contended timings.
        "load_average_after": list(os.getloadavg()),
        "repeats": args.repeats,
        "results": rows,
    }
    save("metrics", payload, args)
    return payload


if __name__ == "__main__":
    run()
