"""Training speed of the production iteration: `Trainer.iteration` (d_repeats D steps with the
loss's penalties, the G step, the EMA update, gradient averaging, the minibatch-stddev group
layout) fed by a synthetic batch source, per (resolution, batch) point and per path, side by side.

    python -m benchmarks train -- --spec specs/celebahq_1024_h100.yaml \\
        --points 128:16,1024:4,1024:16 --paths plain,fast --gp-share --project   (a GPU)
    python -m benchmarks train -- --spec specs/celebahq_1024.yaml --points 64:4 --threads 1 \\
        --paths plain,channels_last,paired_critic,gradfix,compile,fast            (a CPU)

Paths (`PATHS`): `plain` (every fast path and gradfix off: the spec's precision, stock convs,
contiguous tensors, two D calls), `fast` (every fast path on, compile as `--compile` says, gradfix
at its device default), `fast-eager` (fast without compile), and one path per switch (`plain`
plus that one). Timing: CUDA events around each iteration on a GPU, perf_counter on a CPU, after
`--warmup` untimed iterations (compile happens there: reported as `first_s`); the median of
`--repeats`. Peak memory is CUDA's max allocated over the timed iterations.

`--gp-share`: the same point and path with the loss set to LSGAN (the same D calls on reals and
fakes, no penalty), and gp_share = 1 - t(LSGAN) / t(WGAN-GP): what the gradient penalty (its D
call and double backward) costs; on paths without compile (a compiled LSGAN twin would double
the compile time). `--project`: every stable resolution at the spec's minibatch on
`--project-path` (default fast-eager: compiling 9 stages would not fit a device check), and the
projected wall time of the spec's whole schedule from those per-resolution costs (fade phases are
charged at their resolution's stable cost; a fade-in adds one 1x1 conv per network and a lerp).

Results are written after every measured row, so a run stopped by a time limit keeps what it
measured; `--budget S` skips the rows that would start after S seconds (recorded as skipped).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from .common import (
    add_budget,
    add_output,
    add_threads,
    apply_threads,
    bench_parser,
    machine,
    print_table,
    write_json,
)

SWITCHES = ("channels_last", "paired_critic", "compile")
PATH_NAMES = ("plain", "fast", "fast-eager", *SWITCHES, "gradfix")
COLUMNS = [
    "resolution",
    "phase",
    "batch",
    "path",
    "iter_ms",
    "img_s",
    "spread_ms",
    "first_s",
    "peak_mem_gb",
    "gp_share",
    "note",
]
BIG = 10**15  # images: a phase that never ends while timing


def path_options(name: str, compile_on: bool, backend: str) -> tuple[Any, bool | None]:
    """(FastPaths, gradfix) of a path name."""
    from progan_dsl.train.fast import FastPaths

    plain = FastPaths.plain()
    if name == "plain":
        return plain, False
    if name in ("fast", "fast-eager"):
        return FastPaths(
            channels_last=True,
            paired_critic=True,
            compile=compile_on and name == "fast",
            compile_backend=backend,
        ), None
    if name == "gradfix":
        return plain, True
    if name in SWITCHES:
        return FastPaths(
            **{**{s: False for s in SWITCHES}, name: True}, compile_backend=backend
        ), False
    raise SystemExit(f"bench_train: unknown path {name!r} (paths: {', '.join(PATH_NAMES)})")


def make_trainer(
    program: Any,
    resolution: int,
    phase_kind: str,
    batch: int,
    device: Any,
    fast: Any,
    gradfix: bool | None,
    seed: int = 0,
) -> Any:
    """A production `Trainer` at one point: a one-phase schedule that never ends, one process,
    synthetic reals on the device."""
    import torch

    from progan_dsl.train.distributed import DistEnv
    from progan_dsl.train.schedule import Phase, Schedule
    from progan_dsl.train.trainer import Trainer

    spec = program.spec
    stage = program.stage(resolution, phase_kind)
    lr = spec.training.schedule.learning_rate.get(resolution, spec.training.optimizer.lr)
    phase = Phase(
        index=0, stage=stage, start=0, end=BIG, length=BIG, minibatch=batch, learning_rate=lr
    )
    arch = spec.architecture
    height, width = arch.spatial(resolution)
    gen = torch.Generator().manual_seed(seed)
    reals = [
        torch.randn(batch, arch.image_channels, height, width, generator=gen).to(device)
        for _ in range(2)
    ]
    calls = [0]

    def source(res: int, global_batch: int, alpha: float) -> Any:  # a BatchSource
        calls[0] += 1
        return reals[calls[0] % 2]

    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    trainer = Trainer(
        program, Schedule((phase,), BIG), env, source, seed, gradfix=gradfix, fast=fast
    )
    trainer.enter_phase(phase)
    return trainer


def timer(device: Any) -> Callable[[Callable[[], None]], float]:
    """Seconds one call takes: CUDA events on a GPU, perf_counter on a CPU."""
    import torch

    def cuda_time(fn: Callable[[], None]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0

    def cpu_time(fn: Callable[[], None]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return cuda_time if device.type == "cuda" else cpu_time


def measure(trainer: Any, *, repeats: int, warmup: int) -> dict[str, Any]:
    """Median seconds per iteration and images per second of a trainer at its point."""
    import torch

    cuda = trainer.device.type == "cuda"
    time_it = timer(trainer.device)
    began = time.perf_counter()
    for _ in range(warmup):
        trainer.iteration()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    first = time.perf_counter() - began
    times = [time_it(trainer.iteration) for _ in range(repeats)]
    return summarize(trainer, times, first)


def summarize(trainer: Any, times: list[float], first: float) -> dict[str, Any]:
    """A row's figures from the timed iterations of a trainer."""
    import torch

    trainer.sync_stats()  # the statistics an interval would sync; never inside the timing
    seconds = statistics.median(times)
    shown = trainer.phase.minibatch * trainer.training.d_repeats  # images D saw per iteration
    row: dict[str, Any] = {
        "iter_ms": 1000 * seconds,
        "img_s": shown / seconds,
        "spread_ms": 1000 * (max(times) - min(times)),
        "first_s": first,
        "repeats": len(times),
        "fast_paths": trainer.fast.describe(),
    }
    if trainer.device.type == "cuda":
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def measure_interleaved(
    program: Any,
    lsgan: Any,
    point: tuple[int, int],
    phase: str,
    paths: list[str],
    args: argparse.Namespace,
    device: Any,
) -> list[dict]:
    """Every path's trainer (and LSGAN twin) at one point, timed round-robin, one iteration each
    per round: a background load that drifts slows every path alike (`--interleave`, for a
    shared CPU). Peak memory is then that of all of them together."""
    compile_on = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    resolution, batch = point
    entries: list[tuple[str, bool, Any]] = []  # (path, LSGAN twin?, trainer)
    for path in paths:
        fast, gradfix = path_options(path, compile_on, args.compile_backend)
        for twin, prog in ((False, program), (True, lsgan)):
            if prog is not None and not (twin and fast.compile):
                trainer = make_trainer(prog, resolution, phase, batch, device, fast, gradfix)
                entries.append((path, twin, trainer))
    time_it = timer(device)
    first = []
    for _, _, trainer in entries:
        began = time.perf_counter()
        for _ in range(args.warmup):
            trainer.iteration()
        first.append(time.perf_counter() - began)
    times: list[list[float]] = [[] for _ in entries]
    for _ in range(args.repeats):
        for i, (_, _, trainer) in enumerate(entries):
            times[i].append(time_it(trainer.iteration))
    rows: dict[str, dict[str, Any]] = {}
    twins: dict[str, dict[str, Any]] = {}
    for i, (path, twin, trainer) in enumerate(entries):
        row = {
            "resolution": resolution,
            "phase": phase,
            "batch": batch,
            "path": path,
            "gradfix": trainer.gradfix,
            "interleaved": True,
            **summarize(trainer, times[i], first[i]),
        }
        (twins if twin else rows)[path] = row
    for path, twin_row in twins.items():
        rows[path]["lsgan_iter_ms"] = twin_row["iter_ms"]
        rows[path]["gp_share"] = 1.0 - twin_row["iter_ms"] / rows[path]["iter_ms"]
    return [rows[p] for p in paths]


def measure_point(
    program: Any,
    lsgan: Any,
    point: tuple[int, int],
    phase: str,
    path: str,
    args: argparse.Namespace,
    device: Any,
) -> dict[str, Any]:
    import torch

    resolution, batch = point
    compile_on = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    fast, gradfix = path_options(path, compile_on, args.compile_backend)
    row: dict[str, Any] = {
        "resolution": resolution,
        "phase": phase,
        "batch": batch,
        "path": path,
        "gradfix": gradfix,
    }
    trainer = make_trainer(program, resolution, phase, batch, device, fast, gradfix)
    row.update(measure(trainer, repeats=args.repeats, warmup=args.warmup))
    del trainer
    if lsgan is not None and not fast.compile:  # compiling the LSGAN twin too: 2x compile time
        other = make_trainer(lsgan, resolution, phase, batch, device, fast, gradfix)
        ls = measure(other, repeats=args.repeats, warmup=args.warmup)
        row["lsgan_iter_ms"] = ls["iter_ms"]
        row["gp_share"] = 1.0 - ls["iter_ms"] / row["iter_ms"]
        del other
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def projected_hours(schedule: Any, seconds_per_image: dict[int, float]) -> float | None:
    """Wall time of the whole schedule from measured seconds per image at each resolution."""
    total = 0.0
    for phase in schedule.phases:
        if phase.resolution not in seconds_per_image:
            return None
        total += (phase.end - phase.start) * seconds_per_image[phase.resolution]
    return total / 3600.0


def _parser() -> argparse.ArgumentParser:
    p = bench_parser("train", __doc__.splitlines()[0])
    p.add_argument(
        "--spec",
        default=None,
        help="default: specs/celebahq_1024_h100.yaml on CUDA, tests/specs/tiny.yaml on a CPU",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--points",
        default=None,
        metavar="R:B,...",
        help="resolution:batch points (default: every resolution at the spec's minibatch)",
    )
    p.add_argument("--phase", choices=("stable", "fade"), default="stable")
    p.add_argument("--paths", default="plain,fast", help=f"comma list of {', '.join(PATH_NAMES)}")
    p.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="compile in the fast path (auto: on CUDA only)",
    )
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--gp-share", action="store_true", help="also time the loss without penalty")
    p.add_argument(
        "--project",
        action="store_true",
        help="sweep every stable resolution and project the schedule's wall time",
    )
    p.add_argument("--project-path", default="fast-eager", choices=PATH_NAMES)
    p.add_argument(
        "--project-spec", default=None, help="spec whose schedule is projected (default: --spec)"
    )
    p.add_argument(
        "--interleave",
        action="store_true",
        help="time the paths of a point round-robin (steadier on a shared CPU)",
    )
    add_budget(p)
    add_threads(p)
    add_output(p, "train")
    return p


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    import torch

    from progan_dsl.compiler import compile_spec
    from progan_dsl.spec import load_spec
    from progan_dsl.train.schedule import build_schedule

    threads = apply_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    spec_path = args.spec or (
        "specs/celebahq_1024_h100.yaml" if device.type == "cuda" else "tests/specs/tiny.yaml"
    )
    program = compile_spec(spec_path)
    spec = program.spec
    lsgan = None
    if args.gp_share and spec.training.loss.kind == "wgan_gp":
        lsgan = compile_spec(load_spec(spec_path, ["training.loss={kind: lsgan}"]))
    minibatch = spec.training.schedule.minibatch
    points = (
        [tuple(int(v) for v in p.split(":")) for p in args.points.split(",")]
        if args.points
        else [(r, minibatch[r]) for r in spec.architecture.resolutions]
    )
    paths = [p for p in args.paths.split(",") if p]
    compile_on = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    for name in paths:
        path_options(name, compile_on, args.compile_backend)  # unknown names fail before any work
    started = time.perf_counter()
    result: dict[str, Any] = {
        "spec": spec_path,
        "device": str(device),
        "threads": threads,
        "rows": [],
        "sweep": [],
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "no_write")},
    }
    compiled = {p for p in paths if path_options(p, compile_on, args.compile_backend)[0].compile}
    # compiled paths last: their warm-up compiles, the longest and least certain part
    plan: list[tuple[str, Any, str, Any, Any]] = [
        ("rows", pt, args.phase, path, lsgan)
        for pt in points
        for path in paths
        if path not in compiled
    ]
    if args.interleave:  # one entry per point: every path of it, round-robin
        plan = [("interleaved", pt, args.phase, paths, lsgan) for pt in points]
        compiled = set()
    if args.project:
        plan += [
            ("sweep", (r, minibatch[r]), "stable", args.project_path, None)
            for r in spec.architecture.resolutions
        ]
    plan += [
        ("rows", pt, args.phase, path, lsgan) for pt in points for path in paths if path in compiled
    ]
    schedule = build_schedule(compile_spec(args.project_spec or spec_path).spec)
    for table, point, phase, path, ls in plan:
        if args.budget is not None and time.perf_counter() - started > args.budget:
            new = [
                {
                    "resolution": point[0],
                    "batch": point[1],
                    "phase": phase,
                    "path": str(path),
                    "note": f"skipped: past the {args.budget:g} s budget",
                }
            ]
        elif table == "interleaved":
            new = measure_interleaved(program, ls, point, phase, path, args, device)
        else:
            new = [measure_point(program, ls, point, phase, path, args, device)]
        table = "sweep" if table == "sweep" else "rows"
        result[table] += new
        for row in new:
            print(
                f"  {table} {row['resolution']}x{row['resolution']} b{row['batch']} "
                f"{row['path']}: {row.get('img_s', float('nan')):.1f} img/s",
                flush=True,
            )
        if table == "sweep":  # as soon as every resolution is in (a later kill keeps it)
            costs = {r["resolution"]: 1.0 / r["img_s"] for r in result["sweep"] if "img_s" in r}
            result["projected_hours"] = projected_hours(schedule, costs)
            result["projected_path"] = args.project_path
        result["machine"] = machine(str(device))
        if not args.no_write:
            write_json("train", result, args.json, quiet=True)
    print_table(result["rows"], COLUMNS)
    if result["sweep"]:
        print_table(result["sweep"], COLUMNS)
    if result.get("projected_hours") is not None:
        print(
            f"projected wall time of the whole schedule of {args.project_spec or spec_path} "
            f"({args.project_path}): {result['projected_hours']:.2f} h"
        )
    result["seconds"] = time.perf_counter() - started
    if not args.no_write:
        write_json("train", result, args.json)
    return result


if __name__ == "__main__":
    run()
