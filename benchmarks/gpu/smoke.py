"""Training smoke of the device check: `progan_dsl.train.train` (the public entry point) on a narrow
spec grown to the largest of `--resolutions` in bf16 (on CUDA; fp32 on a CPU): one run, stopped
inside the fade-in to each listed R (alpha 0.5) and resumed from that checkpoint (`--resume auto`),
the last time trained on through the fade-in into the final stable phase. Ticks and snapshots
only at the ends of the invocations: the smoke is about growth, checkpoints and resumption.

Checked per R: the checkpoint is taken inside the fade-in (stage R/fade, 0 < alpha < 1); a
`Trainer` restored from it holds exactly its weights, optimizer moments and position (state
restored); the next invocation resumes the same run folder at that position (a `resume` record)
and trains on past it (into the final stable phase after the last R); every logged loss is
finite. Bitwise equality with an uninterrupted run is not asked on CUDA (cuDNN's autotuned
kernels differ between processes); tests/train/test_train_run.py checks it on the CPU.

    python -m benchmarks.gpu.smoke --device cuda --resolutions 64,256 --out DIR --json F
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from ..common import write_json

PHASE_IMAGES = 64  # images per fade-in and per stable phase: a few iterations each
WIDTHS = {4: 32, 8: 32, 16: 32, 32: 16, 64: 16, 128: 8, 256: 8, 512: 8, 1024: 8}
BATCHES = {4: 16, 8: 16, 16: 16, 32: 8, 64: 8, 128: 8, 256: 4, 512: 4, 1024: 4}

SPEC = """\
spec_version: 1
name: smoke_{final}
architecture:
  latent_size: 32
  image_channels: 3
  final_resolution: {final}
  channels:
    table: {widths}
  generator:
    first_block:
      - {{kind: project, gain: 0.3535533905932738}}
      - {{kind: conv}}
    block:
      - {{kind: upsample}}
      - {{kind: conv}}
      - {{kind: conv}}
  discriminator:
    block:
      - {{kind: conv}}
      - {{kind: conv, out: lower}}
      - {{kind: downsample}}
    last_block:
      - {{kind: minibatch_stddev, group_size: 4}}
      - {{kind: conv}}
      - {{kind: dense, out: 32}}
      - {{kind: dense, out: 1, activation: linear, gain: 1.0}}
training:
  precision: {precision}
  schedule:
    fade_kimg: {kimg}
    stable_kimg: {kimg}
    minibatch: {batches}
  tick_kimg: 1000
  snapshot: {{every_kimg: 1000, keep: 3}}
  evaluation: {{metrics: []}}
  grid: {{rows: 2, cols: 2}}
"""


def _flow(mapping: dict[int, int], final: int) -> str:
    return "{" + ", ".join(f"{r}: {v}" for r, v in mapping.items() if r <= final) + "}"


def write_spec(folder: Path, final: int, precision: str) -> Path:
    path = folder / f"smoke_{final}.yaml"
    path.write_text(
        SPEC.format(
            final=final,
            widths=_flow(WIDTHS, final),
            batches=_flow(BATCHES, final),
            kimg=PHASE_IMAGES / 1000,
            precision=precision,
        )
    )
    return path


def write_dataset(folder: Path, final: int, count: int = 48) -> Path:
    """Random RGB images with a bright square, as a dataset at `final` (every level below)."""
    import numpy as np

    from progan_dsl.data import CreateOptions, create_dataset

    rng = np.random.default_rng(final)
    images = rng.integers(0, 64, (count, final, final, 3), dtype=np.uint8)
    side = max(2, final // 3)
    for i in range(count):
        y, x = rng.integers(0, final - side, 2)
        images[i, y : y + side, x : x + side] = 230
    np.save(folder / f"src{final}.npy", images)
    out = folder / f"ds{final}"
    create_dataset(
        CreateOptions(
            source=str(folder / f"src{final}.npy"), out=out, resolution=final, progress=False
        )
    )
    return out


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _finite(records: list[dict[str, Any]]) -> bool:
    ticks = [r for r in records if r["event"] == "tick"]
    return bool(ticks) and all(
        math.isfinite(float(r[k])) for r in ticks for k in ("loss_D", "loss_G") if k in r
    )


def _restored_exactly(ckpt: Any, device: str) -> bool:
    """A Trainer restored from `ckpt` holds its weights, Adam moments and position exactly."""
    import torch

    from progan_dsl.compiler import compile_spec
    from progan_dsl.train.distributed import DistEnv
    from progan_dsl.train.schedule import build_schedule
    from progan_dsl.train.trainer import Trainer

    program = compile_spec(ckpt.loaded)
    state = ckpt.run_state
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    trainer = Trainer(
        program,
        build_schedule(program.spec, state.kimg if state else None),
        env,
        lambda r, b, a: torch.zeros(0),
        state.seed if state else 0,
    )
    trainer.restore(ckpt)
    same = all(
        torch.equal(getattr(trainer, net).state_dict()[k].cpu(), v)
        for net in ("G", "D", "G_ema")
        for k, v in getattr(ckpt, net).items()
    )
    moments = trainer.opt_D.state_dict()["state"]  # type: ignore[union-attr]
    saved = ckpt.training.opt_D["state"]
    same_opt = moments.keys() == saved.keys() and all(
        torch.equal(moments[i][k].cpu(), saved[i][k].cpu()) for i in saved for k in saved[i]
    )
    return same and same_opt and trainer.images_shown == ckpt.images_shown


def smoke(resolutions: list[int], folder: Path, device: str) -> dict[str, Any]:
    """One run grown to the largest of `resolutions`, stopped inside the fade-in to each of them
    and resumed from that checkpoint, then trained into the last one's stable phase."""
    from progan_dsl.checkpoint import Checkpoint
    from progan_dsl.compiler import compile_spec
    from progan_dsl.train.loop import TrainOptions, train
    from progan_dsl.train.schedule import build_schedule

    final = max(resolutions)
    precision = "bf16" if device.startswith("cuda") else "fp32"
    spec = write_spec(folder, final, precision)
    data = write_dataset(folder, final)
    schedule = build_schedule(compile_spec(spec).spec)
    fades = {p.resolution: p for p in schedule.phases if p.fading}
    stops = [fades[r].start + fades[r].length // 2 for r in sorted(resolutions)]  # alpha 0.5
    end = fades[final].end + PHASE_IMAGES // 2  # into the stable phase after the last fade-in
    opts = {
        "spec": str(spec),
        "data": str(data),
        "outdir": str(folder / "runs"),
        "device": device,
        "progress": False,
        "quiet": True,
    }
    began = time.perf_counter()
    results = [train(TrainOptions(**opts, kimg=stops[0] / 1000))]  # a new run
    ckpts = [Checkpoint.load(results[0].run_dir)]
    restored = [_restored_exactly(ckpts[0], device)]
    for stop in [*stops[1:], end]:
        results.append(train(TrainOptions(**opts, kimg=stop / 1000, resume="auto")))
        ckpts.append(Checkpoint.load(results[-1].run_dir))
        if stop != end:
            restored.append(_restored_exactly(ckpts[-1], device))
    records = _records(results[0].run_dir)
    resumes = [r["images_shown"] for r in records if r["event"] == "resume"]
    runs = []
    for k, resolution in enumerate(sorted(resolutions)):
        ckpt, after = ckpts[k], ckpts[k + 1]
        fade = fades[resolution]
        checks = {
            "stopped_in_fade": str(ckpt.stage) == f"{resolution}/fade"
            and 0 < fade.alpha(ckpt.images_shown) < 1,
            "state_restored_exactly": restored[k],
            "resumed_same_run": results[k + 1].run_dir == results[0].run_dir,
            "resumed_at_checkpoint": ckpt.images_shown in resumes,
            "training_continued": after.images_shown > ckpt.images_shown
            and (k + 1 < len(stops) or str(after.stage) == f"{final}/stable"),
            "losses_finite": _finite(records),
        }
        runs.append(
            {
                "resolution": resolution,
                "precision": precision,
                "device": device,
                "checkpoint": {
                    "stage": str(ckpt.stage),
                    "images_shown": ckpt.images_shown,
                    "alpha": fade.alpha(ckpt.images_shown),
                },
                "continued_to": after.images_shown,
                "img_per_s": results[k + 1].img_per_s,
                "checks": checks,
                "passed": all(checks.values()),
            }
        )
    return {
        "runs": runs,
        "seconds": time.perf_counter() - began,
        "passed": all(r["passed"] for r in runs),
    }


def run(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="gpu-smoke", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--resolutions", default="64,256")
    p.add_argument("--out", type=Path, required=True, help="scratch folder (datasets, runs)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    import torch

    from progan_dsl.devices import default_threads

    torch.set_num_threads(args.threads or default_threads())
    args.out.mkdir(parents=True, exist_ok=True)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    results = smoke(resolutions, args.out, args.device)
    for run_ in results["runs"]:
        print(f"  smoke {run_['resolution']}x{run_['resolution']}: {run_['checks']}", flush=True)
    write_json("smoke", results, args.json, quiet=True)
    return results


if __name__ == "__main__":
    import sys

    sys.exit(0 if run()["passed"] else 1)
