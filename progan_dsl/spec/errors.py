"""Spec errors: a list of located issues, formatted as `file:line:col: key.path: message`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from progan_dsl.errors import UserError


def format_loc(loc: tuple[Any, ...]) -> str:
    """`('architecture', 'generator', 'block', 0, 'kernel')` -> `architecture.generator.block[0].kernel`."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True)
class Issue:
    """One problem in a spec, with its place."""

    path: str
    line: int
    col: int
    loc: tuple[Any, ...]
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        key = format_loc(self.loc)
        return f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"


class SpecError(UserError):
    """One or more spec issues, reported together and ordered by position."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line, i.col))
        count = len(self.issues)
        head = f"{count} problems in spec" if count > 1 else "invalid spec"
        super().__init__(head + ":\n" + "\n".join(f"  {i}" for i in self.issues))
