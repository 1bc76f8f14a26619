"""`progan-compile`: validate a spec, print its summary, table, graph dump, schema; emit source;
render diagrams. Thin: parse, call the library, format."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from progan_dsl.cliutil import add_common, add_set, parser_for
from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_text_atomic

if TYPE_CHECKING:
    from progan_dsl.compiler import Program

EXAMPLES = """examples:
  progan-compile specs/celebahq_1024.yaml                 validate, print a summary
  progan-compile specs/celebahq_1024.yaml --table         Table 2 of the final G and D
  progan-compile specs/mnist_32.yaml --dump --stage 16    graph dump of stage 16 (fade+stable)
  progan-compile specs/mnist_32.yaml --emit-source out/   standalone PyTorch modules
  progan-compile specs/mnist_32.yaml --set architecture.latent_size=256   override a value
  progan-compile specs/celebahq_1024.yaml --render diagrams/ --format png --stage 8
  progan-compile --schema schema/progan-spec.schema.json  JSON Schema for editors
"""


def parser() -> argparse.ArgumentParser:
    p = parser_for(
        "progan-compile", "Compile a ProGAN spec: validate, inspect, emit code, draw.", EXAMPLES
    )
    p.add_argument("spec", nargs="?", help="spec YAML file")
    add_set(p)
    p.add_argument(
        "--table", action="store_true", help="print the paper-style layer table (Table 2)"
    )
    p.add_argument("--dump", action="store_true", help="print the block graphs as text")
    p.add_argument("--stage", default="all", help="resolution for --dump/--render (default all)")
    p.add_argument("--emit-source", metavar="DIR", help="write generated PyTorch modules to DIR")
    p.add_argument(
        "--force",
        action="store_true",
        help="with --emit-source or --render: replace an earlier emission or render in DIR "
        "(nothing else)",
    )
    p.add_argument(
        "--render",
        metavar="DIR",
        help="draw the graphs with graphviz into DIR (a new or empty folder)",
    )
    p.add_argument(
        "--format", default="svg", choices=["svg", "png", "pdf", "dot"], help="--render format"
    )
    p.add_argument(
        "--schema", metavar="FILE", help="write the JSON Schema of the spec language ('-' = stdout)"
    )
    fuse = p.add_mutually_exclusive_group()
    fuse.add_argument(
        "--fuse",
        dest="fused",
        action="store_true",
        default=None,
        help="force the fused up/down convs on",
    )
    fuse.add_argument("--no-fuse", dest="fused", action="store_false", help="force them off")
    add_common(p)
    return p


def summary(program: Program) -> str:
    spec, arch = program.spec, program.spec.architecture
    final = program.final_stage
    h, w = arch.spatial(arch.final_resolution)
    sched = spec.training.schedule
    lines = [
        f"spec       {spec.name} ({program.loaded.path}, sha256 {program.loaded.hash[:16]})",
        f"images     {arch.image_channels} x {h} x {w}, latent {arch.latent_size}",
        f"growth     {' -> '.join(str(r) for r in arch.resolutions)} "
        f"({len(program.stages)} stages, fade-in {'on' if arch.fade_in else 'off'}, "
        f"fused_scale {'on' if program.fused else 'off'})",
        f"channels   {', '.join(f'{r}:{arch.channels_at(r)}' for r in arch.resolutions)}",
        f"params     G {program.params('G', final):,}   D {program.params('D', final):,}",
        f"loss       {spec.training.loss.kind}, Adam lr {spec.training.optimizer.lr:g}, "
        f"EMA {spec.training.ema.decay if spec.training.ema.enabled else 'off'}",
        f"schedule   {sched.total_kimg if sched.total_kimg is not None else 'open-ended'} kimg, "
        f"minibatch {dict(sched.minibatch)}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.schema:
        from progan_dsl.spec.schema import schema_text

        text = schema_text()
        if args.schema == "-":
            sys.stdout.write(text)
        else:
            if Path(args.schema).is_dir():
                raise UserError(f"--schema {args.schema}: is a folder; give the file to write")
            write_text_atomic(args.schema, text)
            if not args.quiet:
                print(f"wrote {args.schema}")
        if not args.spec:
            return 0
    if not args.spec:
        raise UserError("no spec given (usage: progan-compile SPEC [options]; see --help)")

    from progan_dsl.compiler import compile_spec
    from progan_dsl.ir.pipeline import select_stages

    start = time.perf_counter()
    program = compile_spec(args.spec, fused=args.fused, overrides=args.overrides)
    stages = select_stages(program.stages, args.stage, spec_name=program.spec.name)
    say = print if not args.quiet else (lambda *_: None)
    did = False
    if args.table:
        from progan_dsl.ir.table import format_table

        plain = compile_spec(program.loaded, fused=False)  # Table 2 lists the unfused layers
        for net in ("G", "D"):
            sys.stdout.write(format_table(plain.graph(net, plain.final_stage)) + "\n")
        did = True
    if args.dump:
        from progan_dsl.ir.dump import dump

        sys.stdout.write(dump(program.graphs, stages))
        did = True
    if args.emit_source:
        from progan_dsl.codegen import emit_package

        files = emit_package(program.graphs, args.emit_source, force=args.force)
        say(f"wrote {len(files)} files to {args.emit_source}")
        did = True
    if args.render:
        from progan_dsl.render import render

        files = render(program, args.render, fmt=args.format, stages=stages, force=args.force)
        say(f"wrote {len(files)} files to {args.render}")
        did = True
    if not did and not args.quiet:  # --quiet: validate only (exit status 0 or 2)
        sys.stdout.write(summary(program))
        say(
            f"ok         compiled {len(program.stages)} stages in "
            f"{time.perf_counter() - start:.2f} s"
        )
    return 0
