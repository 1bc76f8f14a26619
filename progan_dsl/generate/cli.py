"""`progan-generate`: draw images from a generator source; thin over `open_sampler`.

Owns argument parsing and the printed summary: a PNG grid (`--out x.png`), one PNG per image
(`--out DIR`), or a latent walk (`--interpolate STEPS --out x.gif|x.mp4|DIR`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from progan_dsl.cliutil import (
    add_common,
    add_device,
    add_network,
    parser_for,
    positive_float,
    positive_int,
    say,
)
from progan_dsl.errors import UserError

EXAMPLES = """\
examples:
  progan-generate --network celebahq.onnx --num 64 --seed 0 --out grid.png
  progan-generate --network runs/00003-celebahq --seeds 0-7,42 --out faces/   # seed0042.png ...
  progan-generate --network runs/00003-celebahq/checkpoints/checkpoint-006000000.pt \\
      --resolution 256 --out grid256.png
  progan-generate --network celebahq.onnx --num 4 --interpolate 60 --out walk.gif
"""

DEFAULT_NUM = 64
DEFAULT_KEYS = 4  # key latents of an interpolation when --num is not given
DEFAULT_FPS = 30.0
GRID_SUFFIX = ".png"
ANIMATION_SUFFIXES = (".gif", ".mp4")


def parser() -> argparse.ArgumentParser:
    from progan_dsl.generate.sampler import DEFAULT_BATCH, TORCH_BACKENDS

    p = parser_for(
        "progan-generate",
        "Draw images from a generator: a PNG grid, one PNG per "
        "image, or a latent walk (GIF, MP4 or frames). Deterministic for a seed.",
        EXAMPLES,
    )
    add_network(p, required=True)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="grid .png, folder for single PNGs, or .gif/.mp4 with --interpolate",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--num",
        type=positive_int,
        help=f"images (default {DEFAULT_NUM}) drawn from one --seed; key latents "
        f"with --interpolate (default {DEFAULT_KEYS})",
    )
    which.add_argument(
        "--seeds", metavar="LIST", help="one image per seed, e.g. 0-7,42 (files named seed0042.png)"
    )
    p.add_argument("--seed", type=int, default=0, help="latent seed with --num (default 0)")
    add_device(p)
    p.add_argument(
        "--provider",
        choices=("auto", "tensorrt", "cuda", "cpu"),
        default="auto",
        help="onnxruntime provider on cuda: auto = TensorRT > CUDA > CPU (default)",
    )
    p.add_argument(
        "--resolution", type=positive_int, help="stable stage of a checkpoint (default: its own)"
    )
    p.add_argument(
        "--interpolate",
        type=positive_int,
        metavar="STEPS",
        help="a looping walk through the key latents, STEPS frames per key",
    )
    p.add_argument(
        "--interpolation",
        choices=("slerp", "linear"),
        default="slerp",
        help="path between key latents (default slerp)",
    )
    p.add_argument(
        "--fps",
        type=positive_float,
        default=DEFAULT_FPS,
        help=f"frames per second of .gif/.mp4 (default {DEFAULT_FPS:g})",
    )
    p.add_argument("--cols", type=positive_int, help="grid columns (default ceil(sqrt(n)))")
    p.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_BATCH,
        help=f"latents per forward pass (default {DEFAULT_BATCH})",
    )
    p.add_argument(
        "--torch-backend",
        choices=TORCH_BACKENDS,
        default="eager",
        help="how a checkpoint's generator runs: eager (default), compile "
        "(torch.compile), cudagraphs (CUDA graphs, fixed batch)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out folder (replacing what progan-generate wrote there)",
    )
    add_common(p)
    return p


def output_kind(out: Path, interpolate: bool) -> str:
    suffix = out.suffix.lower()
    if out.is_dir() or not suffix:
        return "folder"
    if suffix == GRID_SUFFIX and not interpolate:
        return "grid"
    if suffix in ANIMATION_SUFFIXES and interpolate:
        return "animation"
    if interpolate:
        raise UserError(
            f"--out {out}: an interpolation is written as .gif, .mp4 or a folder of frames"
        )
    if suffix in ANIMATION_SUFFIXES:
        raise UserError(f"--out {out}: an animation needs --interpolate STEPS")
    raise UserError(f"--out {out}: write a grid (.png) or a folder of PNGs (a path without suffix)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import numpy as np

    from progan_dsl.generate import media
    from progan_dsl.generate.latents import interpolate, latents, latents_for_seeds, seed_list
    from progan_dsl.generate.ort import provider_note
    from progan_dsl.generate.sampler import OnnxSampler, open_sampler
    from progan_dsl.images import image_grid, to_uint8, write_png

    interpolating = args.interpolate is not None
    kind = output_kind(args.out, interpolating)
    sampler = open_sampler(
        args.network,
        device=args.device,
        provider=args.provider,
        resolution=args.resolution,
        batch_size=args.batch,
        torch_backend=args.torch_backend,
    )
    if isinstance(sampler, OnnxSampler):
        note = provider_note(sampler.generator.providers)
        if note and not args.quiet:
            say(note)
    if args.seeds is not None:
        seeds = seed_list(args.seeds)
        z = latents_for_seeds(seeds, sampler.latent_size)
        names = [f"seed{s:04d}" for s in seeds]
    else:
        n = args.num or (DEFAULT_KEYS if interpolating else DEFAULT_NUM)
        z = latents(n, sampler.latent_size, args.seed)
        names = [f"img{i:06d}" for i in range(n)]
    if interpolating:
        z = interpolate(z, args.interpolate, args.interpolation)
        names = [f"frame{i:06d}" for i in range(len(z))]
    images = np.concatenate(
        list(map(to_uint8, sampler.iter_sample(z)))
        or [np.zeros((0, sampler.channels, sampler.height, sampler.width), np.uint8)]
    )
    what = f"{len(images)} {'frames' if interpolating else 'images'}"
    if kind == "grid":
        path = write_png(args.out, image_grid(images, args.cols))
        done = f"wrote {path} ({what} in a grid)"
    elif kind == "animation":
        path = media.write_animation(images, args.out, args.fps)
        done = f"wrote {path} ({what} at {args.fps:g} fps)"
    else:
        paths = media.write_image_folder(images, args.out, names, force=args.force)
        done = f"wrote {len(paths)} PNGs to {args.out}/"
    if not args.quiet:
        print(
            f"{done}; {sampler.channels}x{sampler.height}x{sampler.width}, "
            f"{sampler.backend}: {sampler.description}"
        )
    return 0
