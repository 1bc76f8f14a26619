"""What every CLI shares: the argument parser, one vocabulary of options, argument types.

Errors become `UserError` (exit 2, one message, no argparse usage dump). The common options are
spelled and explained one way everywhere: `--device`, `--network` (a run folder, checkpoint or
.onnx file), `--set key.path=value`, `--quiet`, `--version`. Nothing here imports torch, so `--help`
stays fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from progan_dsl.errors import UserError

NETWORK_HELP = (
    "generator source: a run folder (its newest stable checkpoint), a checkpoint "
    "file, or an .onnx or AOTInductor .pt2 file from progan-export"
)
DEVICE_HELP = "cpu, cuda or cuda:<index> (default: cuda when a GPU is available, else cpu)"
SET_HELP = "override a spec value, e.g. --set training.snapshot.keep=5 (repeatable)"
MAX_COUNT = 10_000_000  # images or items one command is asked for: more is a typo


class UserErrorParser(argparse.ArgumentParser):
    """argparse that raises UserError instead of exiting, so errors look like all others."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def parser_for(prog: str, description: str, examples: str) -> UserErrorParser:
    return UserErrorParser(
        prog=prog,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )


def _version() -> str:
    from progan_dsl import __version__

    return __version__


def add_common(p: argparse.ArgumentParser) -> None:
    """--quiet and --version."""
    p.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    add_version(p)


def add_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=f"%(prog)s (progan-dsl {_version()})")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="DEVICE", help=DEVICE_HELP)


def add_network(p: argparse.ArgumentParser, *, required: bool, help: str = NETWORK_HELP) -> None:
    p.add_argument("--network", metavar="PATH", required=required, help=help)


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP
    )


def say(line: str) -> None:
    """A note on stderr (results go to stdout)."""
    print(line, file=sys.stderr, flush=True)


def _int_in(text: str, low: int, high: int = MAX_COUNT) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {low}")
    if value > high:
        raise argparse.ArgumentTypeError(f"{text!r} is more than the {high:,} allowed")
    return value


def positive_int(text: str) -> int:
    return _int_in(text, 1)


def non_negative_int(text: str) -> int:
    return _int_in(text, 0)


def seed_int(text: str) -> int:
    """A random seed: 0 .. 2**63 - 1."""
    return _int_in(text, 0, 2**63 - 1)


def positive_float(text: str) -> float:
    """A finite number > 0 (refuses inf and nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number greater than 0")
    return value


__all__ = [
    "UserErrorParser",
    "add_common",
    "add_device",
    "add_network",
    "add_set",
    "add_version",
    "non_negative_int",
    "parser_for",
    "positive_float",
    "positive_int",
    "say",
    "seed_int",
]
