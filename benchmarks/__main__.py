"""`python -m benchmarks [compile loader metrics inference train ...] [-- extra args]`.

`main(argv) -> int` is the entry point (a `progan-bench` console script can call it). Modules are
imported relative to this package, so the folder also works installed under another name
(`progan_dsl.benchmarks`).
"""

from __future__ import annotations

import importlib
import sys

ALL = ["compile", "loader", "metrics", "inference", "train"]
USAGE = "usage: python -m benchmarks [" + " ".join(ALL) + "] [-- ARGS passed to each]"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    names = argv or ALL
    for name in names:
        if name not in ALL:
            print(f"unknown benchmark {name!r} (available: {', '.join(ALL)})", file=sys.stderr)
            return 2
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(f".bench_{name}", __package__ or "benchmarks")
        module.run(extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
