"""`progan-bench [NAME ...] [-- ARGS]`: run the benchmarks (all by default), passing ARGS to each.

`main(argv) -> int` is the entry point of the `progan-bench` console script (and of
`python -m benchmarks` from the repository root). It parses like every other progan command
(`--help` with examples and no torch, `--version`, errors as one message with exit 2); what
follows `--` goes to each benchmark's own parser (`progan-bench train -- --help`). Modules are
imported relative to this package, so the folder also works installed as
`progan_dsl.benchmarks`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from progan_dsl.cliutil import UserErrorParser, add_version, parser_for
from progan_dsl.errors import UserError

ALL = ["compile", "loader", "metrics", "inference", "train"]
# run only when named: they need labelled data or training runs
ON_REQUEST = ["conditional", "ada_heuristics", "augment", "augment_cost"]
PROG = "progan-bench"

EXAMPLES = f"""benchmarks: {", ".join(ALL)}; when named: {", ".join(ON_REQUEST)}

examples:
  progan-bench                                   every benchmark with its defaults
  progan-bench compile -- --json compile.json    one benchmark; what follows -- goes to it
  progan-bench train -- --help                   the options of one benchmark
  progan-bench loader metrics -- --quick         small workloads (a smoke run)
  progan-bench inference -- --threads 1 --rows eager:fp32,onnxruntime:fp32
  progan-bench augment -- --arm none=RUN0,RUN1 --arm ada=RUN2,RUN3   augmentation arms
"""


def parser() -> UserErrorParser:
    p = parser_for(
        PROG,
        "Run progan-dsl's benchmarks: print a table for each and write its results as JSON "
        "(benchmarks/results/NAME.json unless the benchmark is given --json FILE or --no-write).",
        EXAMPLES,
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run, in this order (default: all: {' '.join(ALL)})",
    )
    add_version(p)
    return p


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(progan-bench's own arguments, the arguments after the first `--` for each benchmark)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    own, extra = split_extra(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(own)
    unknown = [name for name in args.names if name not in ALL + ON_REQUEST]
    if unknown:
        raise UserError(
            f"{PROG}: unknown benchmark {unknown[0]!r} (available: "
            f"{', '.join(ALL + ON_REQUEST)}); options for the benchmarks go after --"
        )
    for name in args.names or ALL:
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(f".bench_{name}", __package__ or "benchmarks")
        try:
            module.run(extra)
        except SystemExit as stop:  # a benchmark's own check (`raise SystemExit("message")`)
            if isinstance(stop.code, str):
                raise UserError(stop.code) from None
            raise
    return 0


if __name__ == "__main__":
    from progan_dsl.cli import _run  # errors printed as by every command (exit 2)

    sys.exit(_run(main, None))
