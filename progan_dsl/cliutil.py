"""Argument parsing shared by the CLIs: errors become `UserError` (exit 2, one message, no
argparse usage dump), and small validated argument types."""

from __future__ import annotations

import argparse
from typing import NoReturn

from progan_dsl.errors import UserError


class UserErrorParser(argparse.ArgumentParser):
    """argparse that raises UserError instead of exiting, so errors look like all others."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {low}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


__all__ = ["UserErrorParser", "non_negative_int", "positive_int"]
