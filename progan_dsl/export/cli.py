"""`progan-export` and `progan-generate`: thin command lines over the export package.

Owns argument parsing and the printed summaries only: `export_main` calls
`load_deploy_generator` + `export_onnx` (+ `write_torch_source`), `generate_main` calls
`open_sampler` and the writers of `media`. Errors the user can fix are `UserError`s, which
`progan_dsl.cli` prints without a traceback (exit 2); argparse errors become `UserError`s too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from progan_dsl.cliutil import UserErrorParser, positive_int
from progan_dsl.errors import UserError

_EXPORT_EXAMPLES = """\
examples:
  progan-export runs/00003-celebahq --out celebahq.onnx
  progan-export runs/00003-celebahq/checkpoints/checkpoint-006000000.pt --resolution 256 \\
      --out celebahq256.onnx --precision fp16 --batch 32
  progan-export runs/00003-celebahq --out g.onnx --no-fuse --source celebahq_torch/
"""

_GENERATE_EXAMPLES = """\
examples:
  progan-generate --onnx celebahq.onnx --n 64 --seed 0 --out grid.png
  progan-generate --onnx celebahq.onnx --n 1000 --out fakes/            # one PNG per image
  progan-generate --checkpoint runs/00003-celebahq --device cuda --out grid.png
  progan-generate --onnx celebahq.onnx --n 4 --interpolate 60 --out walk.gif
"""

SUFFIX_GRID = ".png"
SUFFIX_ANIMATIONS = (".gif", ".mp4")
DEFAULT_N = 64
DEFAULT_KEYS = 4  # key latents of an interpolation when --n is not given
DEFAULT_FPS = 30.0


def _batch(text: str) -> str | int:
    return "dynamic" if text == "dynamic" else positive_int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def export_parser() -> argparse.ArgumentParser:
    parser = UserErrorParser(
        prog="progan-export",
        description="Export the EMA generator of a stable stage as one self-contained ONNX file "
        "(input z [N, latent] float32, output images [N, C, H, W] in [-1, 1]).",
        epilog=_EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint", type=Path, help="run folder (newest checkpoint) or checkpoint file"
    )
    parser.add_argument("--out", type=Path, help="the .onnx file to write")
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="weights and arithmetic (fp16 keeps float32 input/output; default fp32)",
    )
    parser.add_argument(
        "--resolution",
        type=positive_int,
        help="stable stage to export (default: the checkpoint's own stage)",
    )
    parser.add_argument(
        "--batch",
        type=_batch,
        default="dynamic",
        help="'dynamic' (default) or a fixed batch size N",
    )
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="recompile without the fused up-conv pass (same weights, same images)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        metavar="DIR",
        help="also write the generated PyTorch code, G_ema.safetensors and generate.py",
    )
    return parser


def export_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.export.generator import load_deploy_generator

    args = export_parser().parse_args(argv)
    if args.out is None and args.source is None:
        raise UserError("progan-export: nothing to write; give --out FILE.onnx and/or --source DIR")
    deployed = load_deploy_generator(
        args.checkpoint, resolution=args.resolution, fused=False if args.no_fuse else None
    )
    program, stage = deployed.program, deployed.stage
    arch = program.spec.architecture
    height, width = arch.spatial(stage.resolution)
    extra = {
        "images_trained": deployed.images_trained,
        "checkpoint": deployed.path.name,
        "weights": deployed.weights,
    }
    print(
        f"generator {stage} of spec '{program.spec.name}' (sha256 {program.loaded.hash[:12]}), "
        f"{deployed.weights} from {deployed.path} ({deployed.images_trained:,} images trained), "
        f"{program.params('G', stage):,} parameters, fused_scale={'on' if program.fused else 'off'}"
    )
    if args.out is not None:
        from progan_dsl.export.onnx_export import export_onnx

        path = export_onnx(
            program,
            stage,
            deployed.G,
            args.out,
            precision=args.precision,
            batch=args.batch,
            metadata=extra,
        )
        n = "N" if args.batch == "dynamic" else str(args.batch)
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.precision}, batch "
            f"{args.batch}): z [{n}, {arch.latent_size}] -> images "
            f"[{n}, {arch.image_channels}, {height}, {width}]"
        )
    if args.source is not None:
        from progan_dsl.export.source import write_torch_source

        folder = write_torch_source(program, stage, deployed.G, args.source, metadata=extra)
        print(f"wrote {folder}/ (PyTorch source, G_ema.safetensors, generate.py)")
    return 0


def generate_parser() -> argparse.ArgumentParser:
    from progan_dsl.export.runtime import PROVIDER_CHOICES
    from progan_dsl.export.sampling import BACKENDS, DEFAULT_BATCH

    parser = UserErrorParser(
        prog="progan-generate",
        description="Draw images from an exported .onnx generator or a checkpoint: a PNG grid "
        "(--out x.png), one PNG per image (--out DIR), or a latent walk "
        "(--interpolate STEPS --out x.gif|x.mp4|DIR). Deterministic for a seed.",
        epilog=_GENERATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", type=Path, help="an .onnx file written by progan-export")
    source.add_argument("--checkpoint", type=Path, help="a checkpoint file or run folder")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="grid .png, folder for single PNGs, or .gif/.mp4 with --interpolate",
    )
    parser.add_argument(
        "--n",
        type=positive_int,
        help=f"images (default {DEFAULT_N}); key latents with --interpolate "
        f"(default {DEFAULT_KEYS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="default: onnxruntime for --onnx, torch for --checkpoint",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:<index>")
    parser.add_argument(
        "--provider",
        choices=tuple(PROVIDER_CHOICES),
        default="auto",
        help="onnxruntime provider on cuda: auto = TensorRT > CUDA > CPU (default)",
    )
    parser.add_argument(
        "--resolution",
        type=positive_int,
        help="stable stage of a checkpoint (default: the checkpoint's own)",
    )
    parser.add_argument(
        "--interpolate",
        type=positive_int,
        metavar="STEPS",
        help="a looping walk through --n key latents, STEPS frames per key",
    )
    parser.add_argument(
        "--interpolation",
        choices=("slerp", "linear"),
        default="slerp",
        help="path between key latents (default slerp)",
    )
    parser.add_argument(
        "--fps",
        type=_positive_float,
        default=DEFAULT_FPS,
        help=f"frames per second of .gif/.mp4 (default {DEFAULT_FPS:g})",
    )
    parser.add_argument("--cols", type=positive_int, help="grid columns (default ceil(sqrt(n)))")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH,
        help=f"latents per forward pass (default {DEFAULT_BATCH})",
    )
    return parser


def _output_kind(out: Path, interpolate: bool) -> str:
    suffix = out.suffix.lower()
    if out.is_dir() or not suffix:
        return "folder"
    if suffix == SUFFIX_GRID and not interpolate:
        return "grid"
    if suffix in SUFFIX_ANIMATIONS and interpolate:
        return "animation"
    if interpolate:
        raise UserError(
            f"--out {out}: an interpolation is written as .gif, .mp4 or a folder of frames"
        )
    if suffix in SUFFIX_ANIMATIONS:
        raise UserError(f"--out {out}: an animation needs --interpolate STEPS")
    raise UserError(f"--out {out}: write a grid (.png) or a folder of PNGs (a path without suffix)")


def generate_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.export import media
    from progan_dsl.export.runtime import provider_note
    from progan_dsl.export.sampling import OnnxSampler, interpolate, latents, open_sampler, to_uint8

    args = generate_parser().parse_args(argv)
    kind = _output_kind(args.out, args.interpolate is not None)
    sampler = open_sampler(
        onnx=args.onnx,
        checkpoint=args.checkpoint,
        device=args.device,
        backend=args.backend,
        provider=args.provider,
        resolution=args.resolution,
        batch_size=args.batch_size,
    )
    where = args.device
    if isinstance(sampler, OnnxSampler):
        providers = sampler.generator.providers
        where = f"{args.device}, {' > '.join(providers)}"
        note = provider_note(providers)
        if note:
            print(note, file=sys.stderr)

    if args.interpolate is None:
        n = args.n or DEFAULT_N
        z = latents(n, sampler.latent_size, args.seed)
    else:
        n = args.n or DEFAULT_KEYS
        z = interpolate(
            latents(n, sampler.latent_size, args.seed), args.interpolate, args.interpolation
        )
    images = to_uint8(sampler.sample(z))
    what = f"{len(images)} {'frames' if args.interpolate else 'images'}"
    if kind == "grid":
        path = media.write_png(media.grid(images, args.cols), args.out)
        print(f"wrote {path} ({what} in a grid)", end="")
    elif kind == "animation":
        path = media.write_animation(images, args.out, args.fps)
        print(f"wrote {path} ({what} at {args.fps:g} fps)", end="")
    else:
        paths = media.write_pngs(images, args.out)
        print(f"wrote {len(paths)} PNGs to {args.out}/", end="")
    print(
        f"; {sampler.channels}x{sampler.height}x{sampler.width}, seed {args.seed}, "
        f"{sampler.backend} ({where})"
    )
    return 0
