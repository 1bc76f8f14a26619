"""Loader throughput: images per second delivered by `ImageLoader.next_batch` (CPU, warm cache).

Builds synthetic random-pixel RGB datasets through the normal `create_dataset` path from a `.npy`
source in a temp dir (2,000 at 32x32, 1,000 at 256x256, 300 at 1024x1024), then times full-epoch
passes for each resolution, batch size, alpha (1.0 = stable phase, 0.5 = fade-in: level R blended
with its float 2x2 mean) and prefetch worker count. Reports the median of the timed passes after
one warm-up pass; also how fast `create` ran. Writes `benchmarks/results/loader.json`.

    progan-bench loader -- [--quick] [--repeats 5] [--workers 0 2] [--json FILE]
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progan_dsl.data import CreateOptions, create_dataset
from progan_dsl.data.loader import ImageLoader

from .common import add_output, add_threads, apply_threads, bench_parser, print_table, save

# resolution -> (images in the synthetic dataset, batch sizes to time)
FULL = {32: (2000, (64, 256)), 256: (1000, (16, 32)), 1024: (300, (4, 32))}
QUICK = {32: (500, (64,)), 256: (100, (16,)), 1024: (20, (4,))}


def _make_dataset(root: Path, resolution: int, count: int) -> tuple[Path, float]:
    """Random RGB images -> .npy -> create_dataset; returns (dataset dir, create seconds)."""
    rng = np.random.default_rng(resolution)
    source = root / f"src{resolution}.npy"
    images = np.lib.format.open_memmap(
        source, mode="w+", dtype=np.uint8, shape=(count, resolution, resolution, 3)
    )
    for start in range(0, count, 32):
        stop = min(count, start + 32)
        images[start:stop] = rng.integers(
            0, 256, (stop - start, resolution, resolution, 3), np.uint8
        )
    images.flush()
    del images
    out = root / f"ds{resolution}"
    began = time.perf_counter()
    create_dataset(
        CreateOptions(source=str(source), out=out, resolution=resolution, progress=False)
    )
    seconds = time.perf_counter() - began
    source.unlink()
    return out, seconds


def _time_epochs(
    loader: ImageLoader, resolution: int, batch: int, alpha: float, count: int, repeats: int
) -> tuple[list[float], list[float]]:
    """(wall img/s, img per CPU-second) of `repeats` passes of about one epoch each, after one
    untimed warm-up pass. CPU time (all threads of this process) is the steadier number on a
    shared machine: other processes slow the wall clock, not the work done per image."""
    steps = max(1, count // batch)
    wall, cpu = [], []
    for repeat in range(repeats + 1):
        began, began_cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            loader.next_batch(resolution, batch, alpha)
        elapsed, elapsed_cpu = time.perf_counter() - began, time.process_time() - began_cpu
        if repeat:  # the first pass warms the page cache and the allocator
            wall.append(steps * batch / elapsed)
            cpu.append(steps * batch / max(elapsed_cpu, 1e-9))
    return wall, cpu


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = bench_parser("loader", __doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small datasets (results in loader_quick.json)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per case")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    add_threads(parser)
    add_output(parser, "loader (loader_quick with --quick)")
    args = parser.parse_args(argv)
    threads = apply_threads(args.threads)
    plan = QUICK if args.quick else FULL
    rows: list[dict[str, Any]] = []
    creates: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        for resolution, (count, batches) in plan.items():
            path, seconds = _make_dataset(Path(tmp), resolution, count)
            creates.append(
                {
                    "resolution": resolution,
                    "images": count,
                    "seconds": round(seconds, 2),
                    "img/s": round(count / seconds),
                }
            )
            for batch, alpha, workers in itertools.product(batches, (1.0, 0.5), args.workers):
                with ImageLoader(path, seed=0, mirror=True, workers=workers) as loader:
                    wall, cpu = _time_epochs(loader, resolution, batch, alpha, count, args.repeats)
                rows.append(
                    {
                        "res": resolution,
                        "images": count,
                        "batch": batch,
                        "alpha": alpha,
                        "workers": workers,
                        "img/s": round(statistics.median(wall)),
                        "img/cpu-s": round(statistics.median(cpu)),
                        "repeats img/s": [round(r) for r in wall],
                    }
                )
                print(f"  {rows[-1]}", flush=True)
            for file in path.iterdir():  # free the disk before the next (bigger) dataset
                file.unlink()
    print()
    print_table(rows, ["res", "images", "batch", "alpha", "workers", "img/s", "img/cpu-s"])
    print()
    print_table(creates, ["resolution", "images", "seconds", "img/s"])
    report = {
        "threads": threads,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_1m_before_after": [load_before, os.getloadavg()[0]],
        },
        "setup": "loader: RGB random pixels, mirror=True, warm page cache, median of timed "
        "epochs; img/cpu-s = images per CPU-second of this process (all threads); "
        "create: .npy source of the top-level shape (no resampling), wall clock",
        "loader": rows,
        "create": creates,
    }
    save("loader_quick" if args.quick else "loader", report, args)
    return report


if __name__ == "__main__":
    run()
