"""`progan-generate`: draw images from a generator source; thin over `open_sampler`.

Owns argument parsing, the layout of what is written and the printed summary: a PNG grid
(`--out x.png`), one PNG per image (`--out DIR`), or a latent walk (`--interpolate STEPS --out
x.gif|x.mp4|DIR`), several walks side by side in one animation with `--walks K`.

Class-conditional generators draw the classes `--class` names (`class_choice`): one class (every
image of it), or a list / `all`, laid out one row per class with the same latents in every row
(the official `row_per_class` grid: the seeds give the columns). `--class` is required for a
conditional generator (no class is made up) and refused for an unconditional one.

Grids and animations are enlarged by an integer factor, nearest neighbour (`--upscale`; by
default the smallest factor that shows each image at least `VIEW_SIDE` pixels on its longer
side), so a 32x32 generator gives a viewable grid or GIF; PNG folders keep the generator's size
unless `--upscale` is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
from progan_dsl.generate.meta import MAX_CLASSES

if TYPE_CHECKING:
    import numpy as np

EXAMPLES = """\
examples:
  progan-generate --network celebahq.onnx --num 64 --seed 0 --out grid.png
  progan-generate --network runs/00003-celebahq --seeds 0-7,42 --out faces/   # seed0042.png ...
  progan-generate --network runs/00003-celebahq/checkpoints/checkpoint-006000000.pt \\
      --resolution 256 --out grid256.png
  progan-generate --network celebahq.onnx --num 4 --interpolate 60 --out walk.gif
  progan-generate --network runs/00000-mnist_32 --walks 16 --num 3 --interpolate 30 \
      --upscale 4 --out walks.gif                         # a 4x4 grid of walks, 128 px cells
  progan-generate --network runs/00001-mnist_32_conditional --class 3 --seeds 0-15 --out threes/
  progan-generate --network runs/00001-mnist_32_conditional --class all --num 8 --out digits.png
      # one row per class (10 rows), the same 8 latents in every row

A .pt2 package (progan-export --aoti) is compiled code that runs when it is loaded: use only
packages from a trusted source, as you would a shared library.
"""

DEFAULT_NUM = 64
DEFAULT_KEYS = 4  # key latents of an interpolation when --num is not given
DEFAULT_FPS = 30.0
GRID_SUFFIX = ".png"
ANIMATION_SUFFIXES = (".gif", ".mp4")
VIEW_SIDE = 256  # default --upscale: grid cells and frames at least this many pixels across
MAX_UPSCALE = 64  # a 4x4 image shown 256 px across needs 64
MAX_WALKS = 256  # a 16x16 grid of walks
DEFAULT_CLASS_COLUMNS = 8  # latents per class row of a several-class grid when --num is not given
ALL_CLASSES = "all"


def class_choice(text: str) -> str | list[int]:
    """--class: 'all', one class index, or a list of indices and ranges ('0,3,7', '0-4'),
    checked against the generator's classes once it is open (`resolve_classes`)."""
    if text.strip() == ALL_CLASSES:
        return ALL_CLASSES
    classes: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a class index, a range like 0-4, or 'all'"
            ) from None
        if low < 0 or high < low:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} must be non-negative and ascending")
        if len(classes) + high - low + 1 > MAX_CLASSES:  # the export contract's limit
            raise argparse.ArgumentTypeError(f"{text!r} names more than {MAX_CLASSES:,} classes")
        classes.extend(range(low, high + 1))
    if len(set(classes)) != len(classes):
        raise argparse.ArgumentTypeError(f"{text!r} names a class twice")
    return classes


def resolve_classes(
    choice: str | list[int] | None, num_classes: int, network: object
) -> list[int] | None:
    """The classes to draw: None for an unconditional generator without --class; a
    `UserError` for --class on an unconditional generator, a conditional one without --class,
    or a class out of range."""
    if choice is None:
        if num_classes:
            raise UserError(
                f"--network {network} is a class-conditional generator ({num_classes} classes, "
                f"0-{num_classes - 1}): give --class K, a list such as 0,3,7, or all (one row "
                "per class)"
            )
        return None
    if not num_classes:
        raise UserError(
            f"--class: --network {network} is an unconditional generator; it takes no class"
        )
    if choice == ALL_CLASSES:
        return list(range(num_classes))
    assert isinstance(choice, list)
    bad = [c for c in choice if c >= num_classes]
    if bad:
        raise UserError(
            f"--class {bad[0]} is out of range: the generator has {num_classes} classes "
            f"(0-{num_classes - 1})"
        )
    return choice


def upscale_factor(text: str) -> int | str:
    """--upscale: 'auto' or an integer factor 1..MAX_UPSCALE."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or an integer") from None
    if not 1 <= value <= MAX_UPSCALE:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 1 to {MAX_UPSCALE}")
    return value


def resolve_upscale(factor: int | str, kind: str, height: int, width: int) -> int:
    """The integer factor for `--upscale` on an output of `kind`: 'auto' is the smallest factor
    that shows an image `VIEW_SIDE` pixels across on its longer side (1 for PNG folders, which
    keep the generator's size); the enlarged image must stay within `MAX_SIDE`."""
    from progan_dsl.generate.meta import MAX_SIDE

    if factor == "auto":
        return 1 if kind == "folder" else max(1, -(-VIEW_SIDE // max(height, width)))
    assert isinstance(factor, int)
    if max(height, width) * factor > MAX_SIDE:
        raise UserError(
            f"--upscale {factor}: {height}x{width} images would be {height * factor}x"
            f"{width * factor}, over {MAX_SIDE} pixels"
        )
    return factor


def enlarge(images: np.ndarray, factor: int) -> np.ndarray:
    """uint8 [N, C, H, W] -> [N, C, H * factor, W * factor], nearest neighbour."""
    if factor == 1:
        return images
    return images.repeat(factor, axis=2).repeat(factor, axis=3)


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
    p.add_argument(
        "--class",
        dest="classes",
        type=class_choice,
        metavar="K|LIST|all",
        help="class-conditional generators (required there): one class K for every image, or "
        "a list (0,3,7 or 0-4) or all: one grid row per class, the same latents (--seeds or "
        f"--num, default {DEFAULT_CLASS_COLUMNS}) as its columns; files classK-seedS.png",
    )
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
    p.add_argument(
        "--walks",
        type=positive_int,
        default=1,
        help=f"with --interpolate: this many walks side by side in one animation, each through "
        f"its own key latents (at most {MAX_WALKS}; default 1)",
    )
    p.add_argument(
        "--upscale",
        type=upscale_factor,
        default="auto",
        metavar="N|auto",
        help=f"enlarge images N times, nearest neighbour; auto (default): grids and animations "
        f"show each image at least {VIEW_SIDE} px across, PNG folders keep the generator's size",
    )
    p.add_argument(
        "--cols", type=positive_int, help="grid columns, of images or walks (default ceil(sqrt(n)))"
    )
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


def walk_frames(frames: np.ndarray, factor: int, cols: int | None) -> np.ndarray:
    """uint8 [walks, T, C, H, W] -> T frames [T, C, H', W']: each frame the grid of the walks at
    that step (one walk: the frames themselves), enlarged `factor` times."""
    import numpy as np

    from progan_dsl.images import image_grid

    walks, steps = frames.shape[:2]
    if walks == 1:
        return enlarge(frames[0], factor)
    return np.stack(
        [image_grid(enlarge(frames[:, t], factor), cols).transpose(2, 0, 1) for t in range(steps)]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import numpy as np

    from progan_dsl.generate import media
    from progan_dsl.generate.latents import interpolate, latents, latents_for_seeds, seed_list
    from progan_dsl.generate.ort import provider_note
    from progan_dsl.generate.sampler import OnnxSampler, class_labels, open_sampler
    from progan_dsl.images import image_grid, to_uint8, write_png

    interpolating = args.interpolate is not None
    kind = output_kind(args.out, interpolating)
    walks = args.walks
    if walks > 1 and not interpolating:
        raise UserError("--walks lays out several latent walks; it needs --interpolate STEPS")
    if walks > MAX_WALKS:
        raise UserError(f"--walks {walks}: at most {MAX_WALKS}")
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
    classes = resolve_classes(args.classes, sampler.num_classes, args.network)
    rows = classes if classes is not None and len(classes) > 1 else None  # one row per class
    if rows is not None and interpolating:
        raise UserError(
            f"--class {','.join(map(str, rows))}: a latent walk draws one class; give --class K"
        )
    if rows is not None and args.cols is not None:
        raise UserError(
            "--cols: a grid of several classes has one row per class and one column per latent"
        )
    if args.seeds is not None:
        seeds = seed_list(args.seeds)
        if len(seeds) % walks:
            raise UserError(
                f"--seeds gives {len(seeds)} seeds for {walks} walks; give a multiple of {walks} "
                "(each walk takes as many key latents)"
            )
        z = latents_for_seeds(seeds, sampler.latent_size)
        names = [f"seed{s:04d}" for s in seeds]
    else:
        default = DEFAULT_CLASS_COLUMNS if rows else DEFAULT_NUM
        n = (args.num or (DEFAULT_KEYS if interpolating else default)) * walks
        z = latents(n, sampler.latent_size, args.seed)
        names = [f"img{i:06d}" for i in range(n)]
    if interpolating:  # walk i goes through key latents i * keys ... (i + 1) * keys - 1
        z = np.concatenate(
            [interpolate(keys, args.interpolate, args.interpolation) for keys in np.split(z, walks)]
        )
    cols = args.cols
    labels = None
    if classes is not None:  # row r of a several-class grid: class rows[r], the latents z
        index = np.repeat(classes, len(z))
        names = [f"class{c}-{name}" for c in classes for name in names]
        cols = len(z) if rows else cols
        z = np.tile(z, (len(classes), 1))
        labels = class_labels(index, len(z), sampler.num_classes)
    factor = resolve_upscale(args.upscale, kind, sampler.height, sampler.width)
    images = np.concatenate(
        list(map(to_uint8, sampler.iter_sample(z, labels)))
        or [np.zeros((0, sampler.channels, sampler.height, sampler.width), np.uint8)]
    )
    if interpolating:
        frames = images.reshape(walks, -1, *images.shape[1:])  # [walks, T, C, H, W]
        images = walk_frames(frames, factor, cols)
        names = [f"frame{i:06d}" for i in range(len(images))]
    else:
        images = enlarge(images, factor)
    what = f"{len(images)} {'frames' if interpolating else 'images'}"
    if walks > 1:
        what += f" of {walks} walks"
    if rows:
        what += f" of classes {','.join(map(str, rows))}, one row per class,"
    elif classes is not None:
        what += f" of class {classes[0]}"
    if kind == "grid":
        path = write_png(args.out, image_grid(images, cols))
        done = f"wrote {path} ({what} in a grid)"
    elif kind == "animation":
        path = media.write_animation(images, args.out, args.fps)
        done = f"wrote {path} ({what} at {args.fps:g} fps)"
    else:
        paths = media.write_image_folder(images, args.out, names, force=args.force)
        done = f"wrote {len(paths)} PNGs to {args.out}/"
    if factor > 1:
        done += f", enlarged {factor}x"
    if not args.quiet:
        print(
            f"{done}; {sampler.channels}x{sampler.height}x{sampler.width}, "
            f"{sampler.backend}: {sampler.description}"
        )
    return 0
