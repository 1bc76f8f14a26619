"""`progan-metrics`: score generated images against a dataset (SWD, MS-SSIM, FID, KID).

Owns the command line only: parse, read the real and generated images, call
`progan_dsl.metrics.evaluation.evaluate` once per metric set (the `--metrics` given, or each
`--preset`), print a table, write JSON and append the results to the log of the run the
generator came from (`progan_dsl.metrics.runlog`). Progress goes to stderr
(`progan_dsl.metrics.progress`) unless --quiet. Generated images come from
`load_fake_images` (one function, so new generator sources plug in there) and real images from
`load_real_images`. Errors the user can fix are `UserError`s, which `progan_dsl.cli` prints
without a traceback (exit 2).

A class-conditional generator is scored on classes drawn from the seed (`fake_classes`): in the
dataset's class distribution when `--data` has labels (`random_labels`, the official
`get_random_labels_tf`, as training draws them), uniformly when no dataset labels are at hand
(no `--data`, or a dataset made without `--labels`). A note says which.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from progan_dsl.cliutil import (
    NETWORK_HELP,
    add_common,
    add_device,
    parser_for,
    positive_int,
    seed_int,
)
from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_text_atomic
from progan_dsl.generate.sampler import DEFAULT_BATCH
from progan_dsl.metrics.progress import bar, show_progress, step
from progan_dsl.metrics.registry import (
    DEFAULT_PATCHES,
    METRIC_INFO,
    PATCH_SAMPLINGS,
    PRESETS,
    Preset,
    preset_key,
    resolve_metric_names,
    resolve_presets,
)
from progan_dsl.metrics.runlog import append_record, metrics_record, run_folder_of
from progan_dsl.paper import MSSSIM_PAIRS as NUM_PAIRS

if TYPE_CHECKING:
    import numpy as np
    import torch

DEFAULT_METRICS = "swd,msssim"
DEFAULT_NUM = 10_000
_INCEPTION_METRICS = {"fid", "kid"}
_EXAMPLES = """\
examples:
  progan-metrics --data data/mnist32 --fake samples/ --metrics swd,msssim
  progan-metrics --data data/celeba128 --fake fakes.npy --metrics swd,msssim,fid,kid \\
      --num 10000 --device cuda --json results/metrics.json
  progan-metrics --data data/mnist32 --network runs/00000-mnist_32 --metrics swd,msssim --num 2048
  progan-metrics --data data/mnist32 --network g.onnx --metrics swd
  progan-metrics --data data/celebahq --network runs/00003-celebahq --preset fid50k_full \
      --device cuda                     # also appended to runs/00003-celebahq/log.jsonl

A .pt2 package (progan-export --aoti) is compiled code that runs when it is loaded: use only
packages from a trusted source, as you would a shared library.
"""


def default_cache_dir() -> Path:
    """Where cached real-image Inception statistics live: $XDG_CACHE_HOME/progan-dsl/metrics."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "progan-dsl" / "metrics"


def build_parser() -> argparse.ArgumentParser:
    metric_lines = "\n".join(f"  {m.name:<13}{m.description}" for m in METRIC_INFO.values())
    preset_lines = "\n".join(f"  {p.name:<13}{p.describe()}" for p in PRESETS.values())
    parser = parser_for(
        "progan-metrics",
        "Score generated images against a dataset made by progan-dataset.",
        f"metrics:\n{metric_lines}\n\npresets:\n{preset_lines}\n\n{_EXAMPLES}",
    )
    parser.add_argument(
        "--data", type=Path, help="dataset directory (real images); needed by swd, fid, kid"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--fake", type=Path, help="generated images: a folder of PNGs or a uint8 .npy"
    )
    source.add_argument(
        "--network",
        type=Path,
        metavar="PATH",
        help=f"{NETWORK_HELP}; a .pt2 runs code when loaded: trusted sources only",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--metrics",
        help=f"comma-separated, see the list below (default {DEFAULT_METRICS})",
    )
    which.add_argument(
        "--preset",
        metavar="NAMES",
        help="comma-separated presets (below): a metric with fixed image counts, e.g. "
        "fid50k_full; results are named after the preset",
    )
    parser.add_argument(
        "--num",
        type=positive_int,
        help=f"images per set, at most (default {DEFAULT_NUM}; a --preset fixes its own)",
    )
    parser.add_argument(
        "--pairs",
        type=positive_int,
        default=NUM_PAIRS,
        help=f"random pairs of generated images for msssim (default {NUM_PAIRS}, as the paper)",
    )
    parser.add_argument(
        "--swd-patches",
        choices=PATCH_SAMPLINGS,
        default=DEFAULT_PATCHES,
        help="fresh (default): each set its own patch positions, as the official evaluation; "
        "shared: the same positions (identical sets give 0; lower than official on aligned data)",
    )
    parser.add_argument(
        "--resolution",
        type=positive_int,
        help="dataset level to compare with (default: the generated images' size)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--no-log",
        action="store_true",
        help="do not append the results to the log.jsonl of the run folder --network names "
        "(or holds the checkpoint)",
    )
    add_device(parser)
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_BATCH,
        help=f"latents per generator forward pass with --network (default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0, help="seed of all random sampling (default 0)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="real-image Inception statistics cache (default: $XDG_CACHE_HOME/progan-dsl/metrics)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write cached real-image statistics"
    )
    add_common(parser)
    return parser


@dataclass
class Fakes:
    """The generated images to score, and where they came from."""

    images: torch.Tensor  # uint8 [N, C, H, W]
    images_trained: int | None  # of the generator, when it came from a checkpoint
    checkpoint: Path | None
    note: str | None = None  # how a conditional generator's classes were drawn


def fake_classes(data: Path | None, num_classes: int, n: int, seed: int) -> tuple[np.ndarray, str]:
    """n class indices for a conditional generator with `num_classes` classes, from `seed`,
    and a note saying how they were drawn: in the class distribution of the dataset `data`
    when it has labels (`random_labels`), else uniformly. A dataset with another number of
    classes is a `UserError`."""
    import torch

    from progan_dsl.data.dataset import ImageDataset
    from progan_dsl.data.labels import random_labels

    generator = torch.Generator().manual_seed(seed)
    dataset = ImageDataset(data) if data is not None else None
    if dataset is not None and dataset.num_classes:
        if dataset.num_classes != num_classes:
            raise UserError(
                f"--data {data} has {dataset.num_classes} classes, the generator "
                f"{num_classes}; score a generator against the dataset it was trained on"
            )
        classes = random_labels(dataset, n, generator).argmax(1).numpy()
        how = f"in the class distribution of {data}"
    else:
        classes = torch.randint(0, num_classes, (n,), generator=generator).numpy()
        how = "uniformly: " + ("no --data" if dataset is None else f"{data} has no labels")
    return classes, f"classes of the generated images drawn {how} ({num_classes} classes)"


def load_fake_images(args: argparse.Namespace, num: int) -> Fakes:
    """At most `num` generated images to score, uint8 [N, C, H, W]: read from --fake, or drawn
    (seeded) from the generator of --network."""
    import numpy as np
    import torch

    from progan_dsl.metrics.images import load_image_source

    if args.fake is not None:
        step(f"reading generated images from {args.fake}")
        return Fakes(load_image_source(args.fake, num), None, None)
    from progan_dsl.generate.sampler import TorchSampler, is_aoti, is_onnx, open_sampler

    exported = is_onnx(args.network) or is_aoti(args.network)  # one stage, no --resolution
    resolution = None if exported else args.resolution
    sampler = open_sampler(
        args.network, device=args.device, resolution=resolution, batch_size=args.batch
    )
    classes, note = None, None
    if sampler.num_classes:
        classes, note = fake_classes(args.data, sampler.num_classes, num, args.seed)
    per_pass = sampler.fixed_batch or sampler.batch_size
    sizes = (min(per_pass, num - start) for start in range(0, num, per_pass))
    batches = bar(
        sampler.iter_uint8(num, args.seed, classes),
        total=num,
        desc="generating",
        unit="img",
        sizes=sizes,
    )
    parts = list(batches)
    shape = (0, sampler.channels, sampler.height, sampler.width)
    images = torch.from_numpy(np.concatenate(parts) if parts else np.zeros(shape, np.uint8))
    if isinstance(sampler, TorchSampler):
        return Fakes(images, sampler.generator.images_trained, sampler.generator.path, note)
    return Fakes(images, None, None, note)


def _fake_label(args: argparse.Namespace) -> str:
    return str(args.fake) if args.fake is not None else f"network {args.network}"


def load_real_images(data: Path, resolution: int, num: int | None) -> torch.Tensor:
    """Real images of one dataset level, uint8 [N, C, H, W] (every image when `num` is None)."""
    from progan_dsl.metrics.images import read_real_images

    step(f"reading {'all' if num is None else f'{num:,}'} real images of {data} ({resolution}px)")
    return read_real_images(data, resolution, num)


def _check_args(args: argparse.Namespace) -> torch.device:
    if args.num is not None and args.num < 2:
        raise UserError(f"--num must be at least 2, got {args.num}")
    from progan_dsl.devices import torch_device

    return torch_device(args.device)


def format_table(results: dict[str, float]) -> str:
    width = max(len("metric"), *(len(name) for name in results))
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in results.items()]
    return "\n".join(lines)


def _shape(images: torch.Tensor) -> str:
    n, c, h, w = images.shape
    return f"{n} images, {h}x{w}x{c}"


@dataclass(frozen=True)
class Job:
    """One `evaluate` call: metrics and image counts (from --metrics and --num, or a preset)."""

    names: list[str]
    num_fake: int
    num_real: int | None  # None: every real image
    pairs: int
    preset: Preset | None = None

    def rename(self, results: dict[str, float]) -> dict[str, float]:
        if self.preset is None:
            return dict(results)
        return {preset_key(self.preset, key): value for key, value in results.items()}


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    if args.preset is None:
        names = resolve_metric_names((args.metrics or DEFAULT_METRICS).split(","))
        num = args.num or DEFAULT_NUM
        return [Job(names, num, num, args.pairs)]
    if args.num is not None:
        raise UserError("--num: a --preset fixes its own image counts; drop --num")
    return [
        Job([p.metric], p.num_fake, p.num_real, p.pairs, p)
        for p in resolve_presets(args.preset.split(","))
    ]


def _read_real(
    args: argparse.Namespace, job: Job, fake: torch.Tensor, resolution: int
) -> torch.Tensor | None:
    """The real images a job needs (None for msssim alone), checked against the fakes."""
    needing = [name for name in job.names if METRIC_INFO[name].needs_real]
    if not needing:
        return None
    if args.data is None:
        raise UserError(
            f"--data is required for {', '.join(needing)} (they compare with real images)"
        )
    real = load_real_images(args.data, resolution, job.num_real)
    if real.shape[1:] != fake.shape[1:]:
        raise UserError(
            f"real images are {'x'.join(map(str, real.shape[2:]))} with {real.shape[1]} "
            f"channel(s), generated ones {'x'.join(map(str, fake.shape[2:]))} with "
            f"{fake.shape[1]}; they must match"
        )
    return real


def run_job(
    args: argparse.Namespace, job: Job, fake: torch.Tensor, resolution: int, device: torch.device
) -> tuple[dict[str, float], list[str], torch.Tensor | None]:
    """One job's results (renamed after its preset), notes and the real images it used."""
    from progan_dsl.metrics.evaluation import evaluate

    if job.preset is not None and fake.shape[0] < job.num_fake:
        raise UserError(
            f"--preset {job.preset.name} scores {job.num_fake:,} generated images; "
            f"{_fake_label(args)} has {fake.shape[0]:,}"
        )
    fake = fake[: job.num_fake]
    real = _read_real(args, job, fake, resolution)
    real_stats = None
    if real is not None and _INCEPTION_METRICS & set(job.names) and not args.no_cache:
        cache_dir = args.cache_dir or default_cache_dir()
        from progan_dsl.metrics.fid import cached_real_stats

        real_stats = cached_real_stats(
            args.data, resolution, job.num_real, cache_dir, device=device, images=real
        )
    results = evaluate(
        job.names,
        real,
        fake,
        device=device,
        seed=args.seed,
        msssim_pairs=job.pairs,
        swd_patches=args.swd_patches,
        real_stats=real_stats,
    )
    return job.rename(results), results.notes, real


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    jobs = plan_jobs(args)
    device = _check_args(args)
    with show_progress(not args.quiet):
        return _main(args, jobs, device)


@dataclass(frozen=True)
class Done:
    """A job's results, notes and the image counts it compared."""

    job: Job
    values: dict[str, float]
    notes: list[str]
    num_fake: int
    num_real: int | None  # None: no real images


def _main(args: argparse.Namespace, jobs: list[Job], device: torch.device) -> int:
    fakes = load_fake_images(args, max(job.num_fake for job in jobs))
    fake = fakes.images
    resolution = args.resolution or max(fake.shape[-2:])  # the longer side, as progan-dataset
    if max(fake.shape[-2:]) != resolution:
        raise UserError(
            f"{_fake_label(args)}: generated images are {fake.shape[-2]}x{fake.shape[-1]}, "
            f"but the comparison resolution is {resolution}"
        )
    done: list[Done] = []
    last_real: torch.Tensor | None = None  # the real images of the last job, for the summary
    for job in jobs:
        values, notes, real = run_job(args, job, fake, resolution, device)
        num_real = None if real is None else int(real.shape[0])
        done.append(Done(job, values, notes, min(fake.shape[0], job.num_fake), num_real))
        last_real = real
    results = {key: value for d in done for key, value in d.values.items()}
    notes = list(dict.fromkeys(note for d in done for note in d.notes))
    if fakes.note is not None:
        notes.append(fakes.note)

    if not args.quiet:
        real_note = "none" if last_real is None else f"{args.data}: {_shape(last_real)}"
        print(f"real: {real_note}\nfake: {_fake_label(args)}: {_shape(fake)}")
        print(format_table(results))
        for note in notes:
            print(f"note: {note}")
    if args.json is not None:
        report = _json_report(args, done, results, notes, resolution, device)
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
        if not args.quiet:
            print(f"wrote {args.json}")
    run = None if args.network is None or args.no_log else run_folder_of(args.network)
    if run is not None and fakes.images_trained is not None:
        for d in done:
            record = metrics_record(
                d.values,
                images_shown=fakes.images_trained,
                resolution=resolution,
                checkpoint=fakes.checkpoint.name if fakes.checkpoint else None,
                preset=d.job.preset.name if d.job.preset else None,
                num_fake=d.num_fake,
                num_real=d.num_real,
                seed=args.seed,
            )
            path = append_record(run, record)
        if not args.quiet:
            print(f"appended to {path}")
    return 0


def _json_report(
    args: argparse.Namespace,
    done: list[Done],
    results: dict[str, float],
    notes: list[str],
    resolution: int,
    device: torch.device,
) -> dict[str, object]:
    """What --json writes: the values, the notes and what was compared."""
    names = {name for d in done for name in d.job.names}
    presets = {
        d.job.preset.name: {"num_fake": d.num_fake, "num_real": d.num_real}
        for d in done
        if d.job.preset is not None
    }
    return {
        "metrics": results,
        "resolution": resolution,
        "num_real": done[-1].num_real,
        "num_fake": max(d.num_fake for d in done),
        "data": None if args.data is None else str(args.data),
        "fake": _fake_label(args),
        "seed": args.seed,
        "msssim_pairs": next((d.job.pairs for d in done if "msssim" in d.job.names), None),
        "swd_patches": args.swd_patches if {"swd", "swd_floor"} & names else None,
        "presets": presets or None,
        "notes": notes,
        "device": str(device),
    }
