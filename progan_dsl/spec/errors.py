"""Spec errors: a list of located issues, formatted as `file:line:col: key.path: message`.

An issue in a `--set KEY=VALUE` argument has no line (line 0) and prints as
`--set KEY=VALUE: key.path: message`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from progan_dsl.errors import UserError


def format_loc(loc: tuple[Any, ...]) -> str:
    """`('architecture', 'generator', 'block', 0, 'kernel')` ->
    `architecture.generator.block[0].kernel`."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True)
class Issue:
    """One problem in a spec, with its place (line 0: a source without lines, e.g. `--set`)."""

    path: str
    line: int
    col: int
    loc: tuple[Any, ...]
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        key = format_loc(self.loc)
        return f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"


class SpecError(UserError):
    """One or more spec issues, reported together: `--set` arguments first, then by position
    (in the order of the files, when `extends` brought in several)."""

    def __init__(self, issues: list[Issue]) -> None:
        files = list(dict.fromkeys(i.path for i in issues if i.line))
        self.issues = sorted(
            issues, key=lambda i: (files.index(i.path) + 1 if i.line else 0, i.line, i.col)
        )
        count = len(self.issues)
        head = f"{count} problems in spec" if count > 1 else "invalid spec"
        super().__init__(head + ":\n" + "\n".join(f"  {i}" for i in self.issues))
