"""`python -m benchmarks [compile loader metrics inference ...] [-- extra args]`."""

from __future__ import annotations

import importlib
import sys

ALL = ["compile", "loader", "metrics", "inference", "train"]


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    names = argv or ALL
    for name in names:
        if name not in ALL:
            print(f"unknown benchmark {name!r} (available: {', '.join(ALL)})", file=sys.stderr)
            return 2
    for name in names:
        print(f"\n=== {name} ===")
        module = importlib.import_module(f"benchmarks.bench_{name}")
        module.run(extra)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
