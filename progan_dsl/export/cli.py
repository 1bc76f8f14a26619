"""`progan-export`: a thin command line over the export package.

Owns argument parsing and the printed summary only: `stable_generator` picks the generator,
`export_onnx` / `export_aoti` / `write_torch_source` write it. Errors the user can fix are
`UserError`s, which `progan_dsl.cli` prints without a traceback (exit 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from progan_dsl.cliutil import add_common, add_network, parser_for, positive_int
from progan_dsl.errors import UserError

EXAMPLES = """\
examples:
  progan-export --network runs/00003-celebahq --out celebahq.onnx
  progan-export --network runs/00003-celebahq/checkpoints/checkpoint-006000000.pt \\
      --resolution 256 --out celebahq256.onnx --precision fp16 --batch 32
  progan-export --network runs/00003-celebahq --out g.onnx --no-fuse --source celebahq_torch/
  progan-export --network runs/00003-celebahq --aoti g.pt2 --aoti-device cuda --precision bf16
"""


def _batch(text: str) -> str | int:
    return "dynamic" if text == "dynamic" else positive_int(text)


def parser() -> argparse.ArgumentParser:
    p = parser_for(
        "progan-export",
        "Export the EMA generator of a stable stage as one "
        "self-contained ONNX file (input z [N, latent] float32, and labels [N, classes] "
        "one-hot float32 for a class-conditional generator; output images [N, C, H, W] in "
        "[-1, 1]), as an AOTInductor package and/or as standalone PyTorch source.",
        EXAMPLES,
    )
    add_network(
        p, required=True, help="a run folder (its newest stable checkpoint) or a checkpoint file"
    )
    p.add_argument("--out", type=Path, metavar="FILE.onnx", help="the .onnx file to write")
    p.add_argument(
        "--aoti",
        type=Path,
        metavar="FILE.pt2",
        help="also write an AOTInductor package (torch.export + ahead-of-time "
        "compiled; runs with torch alone: torch._inductor.aoti_load_package)",
    )
    p.add_argument(
        "--aoti-device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="the device the --aoti package is compiled for (default cpu)",
    )
    p.add_argument(
        "--source",
        type=Path,
        metavar="DIR",
        help="also write the generated PyTorch code, G_ema.safetensors and generate.py",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "bf16"),
        default="fp32",
        help="weights and arithmetic of the .onnx file and the --aoti package (fp16 "
        "and bf16 keep float32 input and output; bf16: --aoti only; default fp32)",
    )
    p.add_argument(
        "--resolution",
        type=positive_int,
        help="stable stage to export (default: the checkpoint's own stage)",
    )
    p.add_argument(
        "--batch",
        type=_batch,
        default="dynamic",
        help="'dynamic' (default) or a fixed batch size N",
    )
    p.add_argument(
        "--no-fuse",
        action="store_true",
        help="recompile without the fused up-conv pass (same weights, same images)",
    )
    p.add_argument("--force", action="store_true", help="replace an earlier --source export in DIR")
    add_common(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.out is None and args.source is None and args.aoti is None:
        raise UserError(
            "progan-export: nothing to write; give --out FILE.onnx, --aoti FILE.pt2 "
            "and/or --source DIR"
        )
    if args.precision == "bf16" and args.out is not None:
        raise UserError("progan-export: --precision bf16 is for --aoti only (ONNX: fp32, fp16)")
    if args.source is not None:  # refused before anything is written, not after the .onnx
        from progan_dsl.export.source import OUTPUT_KIND
        from progan_dsl.fsutil import plan_output_dir

        plan_output_dir(args.source, kind=OUTPUT_KIND, force=args.force)
    from progan_dsl.generate.stable import stable_generator

    chosen = stable_generator(
        args.network, resolution=args.resolution, fused=False if args.no_fuse else None
    )
    program, stage = chosen.program, chosen.stage
    arch = program.spec.architecture
    height, width = arch.spatial(stage.resolution)
    extra = {
        "images_trained": chosen.images_trained,
        "checkpoint": chosen.path.name,
        "weights": chosen.weights,
    }
    report = print if not args.quiet else (lambda *_: None)
    report(
        f"generator {stage} of spec '{program.spec.name}' (sha256 {program.loaded.hash[:12]}), "
        f"{chosen.weights} from {chosen.path} ({chosen.images_trained:,} images trained), "
        f"{program.params('G', stage):,} parameters, fused_scale={'on' if program.fused else 'off'}"
    )
    n = "N" if args.batch == "dynamic" else str(args.batch)
    takes = f"z [{n}, {arch.latent_size}]"
    if program.num_classes:
        takes += f", labels [{n}, {program.num_classes}] (one-hot)"
    io = f"{takes} -> images [{n}, {arch.image_channels}, {height}, {width}]"
    if args.out is not None:
        from progan_dsl.export.onnx_export import export_onnx

        path = export_onnx(
            program,
            stage,
            chosen.G,
            args.out,
            precision=args.precision,
            batch=args.batch,
            metadata=extra,
        )
        report(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.precision}, "
            f"batch {args.batch}): {io}"
        )
    if args.aoti is not None:
        from progan_dsl.export.aoti import export_aoti

        path = export_aoti(
            program,
            stage,
            chosen.G,
            args.aoti,
            precision=args.precision,
            device=args.aoti_device,
            batch=args.batch,
            metadata=extra,
        )
        report(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, AOTInductor for "
            f"{args.aoti_device}, {args.precision}, batch {args.batch}): {io}"
        )
    if args.source is not None:
        from progan_dsl.export.source import write_torch_source

        folder = write_torch_source(
            program, stage, chosen.G, args.source, metadata=extra, force=args.force
        )
        report(f"wrote {folder}/ (PyTorch source, G_ema.safetensors, generate.py)")
    return 0
