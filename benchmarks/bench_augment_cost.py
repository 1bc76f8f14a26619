"""What augmenting D's inputs costs per training iteration: the production `Trainer.iteration`
at each resolution of a spec, without augmentation and with each kind, timed round-robin.

    python -m benchmarks augment_cost -- --spec specs/mnist_32.yaml --threads 1

Arms: `none` (the spec as it is, without `training.augment`), `ada` (adaptive ADA, all 12
transforms: the pipeline computes every transform and masks by p, so its cost does not depend on
p) and `diffaugment` (its three policies). One iteration is the spec's D step(s) (reals, fakes,
the penalty's mixes: three augmented D calls) and the G step (one more). Every arm's trainer at
a point is timed one iteration each per round (a load that drifts slows every arm alike) with
the process's CPU time on a CPU (steady beside other work; one thread) and CUDA events on a GPU;
the median of `--repeats`. `cost_*` is the arm's time over `none`'s, minus 1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.bench_train import make_trainer, timer
from benchmarks.common import (
    add_output,
    add_threads,
    apply_threads,
    bench_parser,
    machine,
    print_table,
    write_json,
)

ARMS = {
    "none": "training.augment=null",
    "ada": "training.augment={kind: ada}",
    "diffaugment": "training.augment={kind: diffaugment}",
}
COLUMNS = ["resolution", "batch", "none_ms", "ada_ms", "diffaugment_ms", "cost_ada", "cost_diff"]


def cpu_timer() -> Callable[[Callable[[], None]], float]:
    """Seconds of this process's CPU time one call takes."""

    def cpu_time(fn: Callable[[], None]) -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    return cpu_time


def measure(
    programs: dict[str, Any], point: tuple[int, int], args: argparse.Namespace, device: Any
) -> dict[str, Any]:
    """Every arm's trainer at one point (stable phase, plain path), timed round-robin."""
    from progan_dsl.train.fast import FastPaths

    resolution, batch = point
    trainers = {
        arm: make_trainer(prog, resolution, "stable", batch, device, FastPaths.plain(), False)
        for arm, prog in programs.items()
    }
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.iteration()
    time_it = timer(device) if device.type == "cuda" else cpu_timer()
    times: dict[str, list[float]] = {arm: [] for arm in trainers}
    for _ in range(args.repeats):
        for arm, trainer in trainers.items():
            times[arm].append(time_it(trainer.iteration))
    row: dict[str, Any] = {"resolution": resolution, "batch": batch}
    for arm, trainer in trainers.items():
        trainer.sync_stats()
        row[f"{arm}_ms"] = 1000 * statistics.median(times[arm])
        row[f"{arm}_augmented"] = trainer.augment is not None
    for arm, short in (("ada", "cost_ada"), ("diffaugment", "cost_diff")):
        row[short] = row[f"{arm}_ms"] / row["none_ms"] - 1.0
    return row


def _parser() -> argparse.ArgumentParser:
    p = bench_parser("augment_cost", __doc__.splitlines()[0])
    p.add_argument("--spec", default="specs/mnist_32.yaml", help="spec (default: the MNIST demo)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--points",
        default=None,
        metavar="R:B,...",
        help="resolution:batch points (default: every resolution at the spec's minibatch)",
    )
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="3 repeats, 1 warm-up (a smoke run)")
    add_threads(p)
    add_output(p, "augment_cost")
    return p


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 3, 1
    import torch

    from progan_dsl.compiler import compile_spec
    from progan_dsl.spec import load_spec

    threads = apply_threads(args.threads)
    device = torch.device(args.device)
    programs = {arm: compile_spec(load_spec(args.spec, [value])) for arm, value in ARMS.items()}
    spec = programs["none"].spec
    minibatch = spec.training.schedule.minibatch
    points = (
        [tuple(int(v) for v in p.split(":")) for p in args.points.split(",")]
        if args.points
        else [(r, minibatch[r]) for r in spec.architecture.resolutions]
    )
    started = time.perf_counter()
    rows = []
    for point in points:
        rows.append(measure(programs, point, args, device))  # type: ignore[arg-type]
        print(f"  {point[0]}x{point[0]} b{point[1]}: done", flush=True)
    print_table(rows, COLUMNS)
    result = {
        "spec": args.spec,
        "device": str(device),
        "threads": threads,
        "timing": "process CPU time" if device.type == "cpu" else "CUDA events",
        "rows": rows,
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "no_write")},
        "machine": machine(str(device)),
        "seconds": time.perf_counter() - started,
    }
    if not args.no_write:
        write_json("augment_cost", result, args.json)
    return result
