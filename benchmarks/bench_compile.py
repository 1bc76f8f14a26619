"""Compiler speed: loading + validating a spec, and compiling + generating + loading the modules
of every stage (targets: 1024 spec under 0.3 s to load, under 2 s for all stages)."""

from __future__ import annotations

from typing import Any

from .common import (
    add_output,
    add_threads,
    apply_threads,
    bench_parser,
    median_time,
    print_table,
    save,
)

SPECS = ["specs/celebahq_1024.yaml", "specs/lsun_256.yaml", "specs/cifar10_32.yaml"]


def run(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser("compile", __doc__)
    parser.add_argument(
        "specs", nargs="*", default=SPECS, metavar="SPEC", help=f"default: {' '.join(SPECS)}"
    )
    add_threads(parser)
    add_output(parser, "compile")
    args = parser.parse_args(argv)
    threads = apply_threads(args.threads)

    from progan_dsl.compiler import compile_spec
    from progan_dsl.spec import load_spec

    rows = []
    for path in args.specs:
        load_s = median_time(lambda path=path: load_spec(path), repeats=7)

        def compile_all(path: str = path) -> None:
            program = compile_spec(path)
            for stage in program.stages:
                for net in ("G", "D"):
                    program.module_class(net, stage)

        compile_s = median_time(compile_all, repeats=5)
        program = compile_spec(path)
        rows.append(
            {
                "spec": path,
                "stages": len(program.stages),
                "load_validate_s": load_s,
                "compile_generate_all_s": compile_s,
            }
        )
    print_table(rows, ["spec", "stages", "load_validate_s", "compile_generate_all_s"])
    result = {
        "threads": threads,
        "compile": rows,
        "targets": {"load_validate_s": 0.3, "compile_generate_all_s": 2.0},
    }
    save("compile", result, args)
    return result


if __name__ == "__main__":
    run()
