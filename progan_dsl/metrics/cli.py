"""`progan-metrics`: score generated images against a dataset (SWD, MS-SSIM, FID, KID).

Owns the command line only: parse, read the real and generated images, call
`progan_dsl.metrics.evaluation.evaluate`, print a table and write JSON. Generated images come from
`load_fake_images` (one function, so new generator sources plug in there) and real images from
`load_real_images`. Errors the user can fix are `UserError`s, which `progan_dsl.cli` prints
without a traceback (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
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
from progan_dsl.metrics.registry import (
    DEFAULT_PATCHES,
    METRIC_INFO,
    PATCH_SAMPLINGS,
    resolve_metric_names,
)
from progan_dsl.paper import MSSSIM_PAIRS as NUM_PAIRS

if TYPE_CHECKING:
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
"""


def default_cache_dir() -> Path:
    """Where cached real-image Inception statistics live: $XDG_CACHE_HOME/progan-dsl/metrics."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "progan-dsl" / "metrics"


def build_parser() -> argparse.ArgumentParser:
    metric_lines = "\n".join(f"  {m.name:<10}{m.description}" for m in METRIC_INFO.values())
    parser = parser_for(
        "progan-metrics",
        "Score generated images against a dataset made by progan-dataset.",
        f"metrics:\n{metric_lines}\n\n{_EXAMPLES}",
    )
    parser.add_argument(
        "--data", type=Path, help="dataset directory (real images); needed by swd, fid, kid"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--fake", type=Path, help="generated images: a folder of PNGs or a uint8 .npy"
    )
    source.add_argument("--network", type=Path, metavar="PATH", help=NETWORK_HELP)
    parser.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        help=f"comma-separated, see the list below (default {DEFAULT_METRICS})",
    )
    parser.add_argument(
        "--num",
        type=positive_int,
        default=DEFAULT_NUM,
        help=f"images per set, at most (default {DEFAULT_NUM})",
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


def load_fake_images(args: argparse.Namespace) -> torch.Tensor:
    """The generated images to score, uint8 [N, C, H, W]: read from --fake, or drawn (seeded)
    from the generator of --network."""
    import torch

    from progan_dsl.metrics.images import load_image_source

    if args.fake is not None:
        return load_image_source(args.fake, args.num)
    from progan_dsl.generate.sampler import is_aoti, is_onnx, open_sampler

    exported = is_onnx(args.network) or is_aoti(args.network)  # one stage, no --resolution
    resolution = None if exported else args.resolution
    sampler = open_sampler(
        args.network, device=args.device, resolution=resolution, batch_size=args.batch
    )
    return torch.from_numpy(sampler.sample_uint8(args.num, args.seed))


def _fake_label(args: argparse.Namespace) -> str:
    return str(args.fake) if args.fake is not None else f"network {args.network}"


def load_real_images(data: Path, resolution: int, num: int) -> torch.Tensor:
    """Real images of one dataset level, uint8 [N, C, H, W]."""
    from progan_dsl.metrics.images import read_real_images

    return read_real_images(data, resolution, num)


def _check_args(args: argparse.Namespace) -> torch.device:
    if args.num < 2:
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


def _read_real(
    args: argparse.Namespace, names: list[str], fake: torch.Tensor, resolution: int
) -> torch.Tensor | None:
    """The real images the metrics need (None for msssim alone), checked against the fakes."""
    needing = [name for name in names if METRIC_INFO[name].needs_real]
    if not needing:
        return None
    if args.data is None:
        raise UserError(
            f"--data is required for {', '.join(needing)} (they compare with real images)"
        )
    real = load_real_images(args.data, resolution, args.num)
    if real.shape[1:] != fake.shape[1:]:
        raise UserError(
            f"real images are {'x'.join(map(str, real.shape[2:]))} with {real.shape[1]} "
            f"channel(s), generated ones {'x'.join(map(str, fake.shape[2:]))} with "
            f"{fake.shape[1]}; they must match"
        )
    return real


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = resolve_metric_names(args.metrics.split(","))
    device = _check_args(args)

    fake = load_fake_images(args)
    resolution = args.resolution or max(fake.shape[-2:])  # the longer side, as progan-dataset
    if max(fake.shape[-2:]) != resolution:
        raise UserError(
            f"{_fake_label(args)}: generated images are {fake.shape[-2]}x{fake.shape[-1]}, "
            f"but the comparison resolution is {resolution}"
        )
    real = _read_real(args, names, fake, resolution)
    real_stats = None
    if real is not None and _INCEPTION_METRICS & set(names) and not args.no_cache:
        cache_dir = args.cache_dir or default_cache_dir()
        from progan_dsl.metrics.fid import cached_real_stats

        real_stats = cached_real_stats(
            args.data, resolution, args.num, cache_dir, device=device, images=real
        )

    from progan_dsl.metrics.evaluation import evaluate

    results = evaluate(
        names,
        real,
        fake,
        device=device,
        seed=args.seed,
        msssim_pairs=args.pairs,
        swd_patches=args.swd_patches,
        real_stats=real_stats,
    )

    real_note = "none" if real is None else f"{args.data}: {_shape(real)}"
    if not args.quiet:
        print(f"real: {real_note}\nfake: {_fake_label(args)}: {_shape(fake)}")
        print(format_table(results))
        for note in results.notes:
            print(f"note: {note}")
    if args.json is not None:
        report = {
            "metrics": results,
            "resolution": resolution,
            "num_real": None if real is None else real.shape[0],
            "num_fake": fake.shape[0],
            "data": None if args.data is None else str(args.data),
            "fake": _fake_label(args),
            "seed": args.seed,
            "msssim_pairs": args.pairs if "msssim" in names else None,
            "swd_patches": args.swd_patches if {"swd", "swd_floor"} & set(names) else None,
            "notes": results.notes,
            "device": str(device),
        }
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
        if not args.quiet:
            print(f"wrote {args.json}")
    return 0
