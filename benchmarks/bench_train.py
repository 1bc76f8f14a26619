"""Training speed: one whole WGAN-GP iteration (D step with gradient penalty and drift, then G
step) per resolution at the spec's minibatch, warm, median of repeats; peak memory; and the
projected wall time of the spec's whole schedule. On CUDA it times with CUDA events and runs the
fast paths (bf16 autocast, channels_last, fused Adam, gradfix convs) next to the plain fp32 path,
so both are measured side by side in one run.

    python -m benchmarks train -- --spec specs/celebahq_1024.yaml --device cuda
    python -m benchmarks train -- --spec tests/specs/tiny.yaml --device cpu     (smoke run)
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from benchmarks.common import print_table, write_json


def _timer(device: torch.device):  # type: ignore[no-untyped-def]
    if device.type == "cuda":
        def cuda_time(fn):  # type: ignore[no-untyped-def]
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

        return cuda_time

    def cpu_time(fn):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return cpu_time


def measure(program: Any, resolution: int, batch: int, device: torch.device, *, fast: bool,
            repeats: int, warmup: int) -> dict[str, Any]:
    """img/s of one training iteration of the stable stage at `resolution`."""
    from progan_dsl.nn import layers

    saved_gradfix = layers.GRADFIX_DEVICES
    layers.GRADFIX_DEVICES = {"cuda"} if fast else set()
    try:
        return _measure(program, resolution, batch, device, fast=fast, repeats=repeats, warmup=warmup)
    finally:
        layers.GRADFIX_DEVICES = saved_gradfix


def _measure(program: Any, resolution: int, batch: int, device: torch.device, *, fast: bool,
             repeats: int, warmup: int) -> dict[str, Any]:
    from progan_dsl.train.losses import d_loss, g_loss

    stage = program.stage(resolution, "stable")
    G = program.build("G", stage).to(device)
    D = program.build("D", stage).to(device)
    memory_format = torch.channels_last if fast and device.type == "cuda" else torch.contiguous_format
    G, D = G.to(memory_format=memory_format), D.to(memory_format=memory_format)
    spec = program.spec
    opt = spec.training.optimizer
    fused = fast and device.type == "cuda"
    opt_g = torch.optim.Adam(G.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, fused=fused)
    opt_d = torch.optim.Adam(D.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, fused=fused)
    use_bf16 = fast and device.type == "cuda"
    latent = spec.architecture.latent_size
    h, w = spec.architecture.spatial(resolution)
    reals = torch.randn(batch, spec.architecture.image_channels, h, w, device=device)
    reals = reals.contiguous(memory_format=memory_format)
    loss_spec = spec.training.loss

    def iteration() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            z = torch.randn(batch, latent, device=device)
            fakes = G(z).detach()
            mix = torch.rand(batch, 1, 1, 1, device=device)
            loss, _ = d_loss(loss_spec, D, reals, fakes, mix)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = g_loss(loss_spec, D, G(torch.randn(batch, latent, device=device)))
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

    timer = _timer(device)
    for _ in range(warmup):
        iteration()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = [timer(iteration) for _ in range(repeats)]
    seconds = statistics.median(times)
    row = {"resolution": resolution, "batch": batch, "path": "fast" if fast else "plain",
           "iter_ms": seconds * 1000.0, "img_s": batch / seconds}
    if device.type == "cuda":
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def projected_hours(program: Any, img_s: dict[int, float]) -> float | None:
    """Wall time of the whole schedule from the measured img/s per resolution (fade phases run
    at the speed of their resolution's stable module plus one extra RGB layer: ignored)."""
    from progan_dsl.train.schedule import build_schedule

    schedule = build_schedule(program.spec)
    total = 0.0
    for phase in schedule.phases:
        if phase.resolution not in img_s:
            return None
        total += (phase.end - phase.start) / img_s[phase.resolution]
    return total / 3600.0


def run(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench_train")
    parser.add_argument("--spec", default=None, help="default: celebahq_1024 on CUDA, tiny on CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", default="all", help="comma list or 'all'")
    parser.add_argument("--batch", type=int, default=None, help="override the spec's minibatch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--paths", default=None, help="plain,fast (default: both on CUDA, plain on CPU)")
    args = parser.parse_args(argv)

    from progan_dsl.compiler import compile_spec

    device = torch.device(args.device)
    spec = args.spec or ("specs/celebahq_1024.yaml" if device.type == "cuda" else "tests/specs/tiny.yaml")
    program = compile_spec(spec)
    arch = program.spec.architecture
    resolutions = arch.resolutions if args.resolutions == "all" else [int(r) for r in args.resolutions.split(",")]
    paths = (args.paths or ("plain,fast" if device.type == "cuda" else "plain")).split(",")
    rows = []
    for res in resolutions:
        batch = args.batch or program.spec.training.schedule.minibatch[res]
        for path in paths:
            rows.append(measure(program, res, batch, device, fast=path == "fast",
                                repeats=args.repeats, warmup=args.warmup))
            print(f"  {res}x{res} {path}: {rows[-1]['img_s']:.1f} img/s")
    projections = {}
    for path in paths:
        speeds = {r["resolution"]: r["img_s"] for r in rows if r["path"] == path}
        projections[path] = projected_hours(program, speeds)
    print_table(rows, ["resolution", "batch", "path", "iter_ms", "img_s", "peak_mem_gb"])
    for path, hours in projections.items():
        if hours is not None:
            print(f"projected wall time of the whole schedule ({path}): {hours:.2f} h")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"spec": spec, "device": device_name, "torch": torch.__version__, "rows": rows,
              "projected_hours": projections}
    write_json("train", result)
    return result


if __name__ == "__main__":
    run()
