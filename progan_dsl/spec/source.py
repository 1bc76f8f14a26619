"""YAML loading with source marks, hardened against hostile input.

Owns: turning spec text into plain Python data plus a map from key paths to (line, col).
Only the YAML core types are built (no tags that construct objects), aliases are expanded
against a node budget (an alias bomb fails fast), duplicate keys are errors, and the text size
is bounded. Everything that goes wrong here is a `SpecError` with a location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from progan_dsl.spec.errors import Issue, SpecError

Path_ = tuple[Any, ...]

MAX_SPEC_BYTES = 1_000_000  # a spec is a page of YAML; anything this large is not one
MAX_NODES = 100_000  # expanded nodes; a billion-laughs document passes this within microseconds

_STD_TAGS = {
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


@dataclass
class SourceDoc:
    """Parsed spec data with a mark (1-based line, col) for every key path."""

    data: Any
    path: str
    text: str
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def mark(self, loc: Path_) -> tuple[int, int]:
        """The mark of the deepest prefix of `loc` that the document has (1, 1 if none)."""
        loc = tuple(loc)
        while loc:
            if loc in self.marks:
                return self.marks[loc]
            loc = loc[:-1]
        return self.marks.get((), (1, 1))


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.budget = MAX_NODES
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.scalars = yaml.SafeLoader("")  # only its scalar constructors are used

    def fail(self, node: yaml.Node, msg: str, loc: Path_ = ()) -> SpecError:
        mark = node.start_mark
        return SpecError([Issue(self.path, mark.line + 1, mark.column + 1, loc, msg)])

    def build(self, node: yaml.Node, loc: Path_) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self.fail(
                node,
                f"document expands to more than {MAX_NODES} nodes "
                "(an alias bomb?); specs are small: write the values out",
                loc,
            )
        self.marks.setdefault(loc, (node.start_mark.line + 1, node.start_mark.column + 1))
        if node.tag not in _STD_TAGS:
            raise self.fail(
                node,
                f"YAML tag {node.tag!r} is not allowed (plain maps, lists, strings, numbers, "
                "booleans and null only)",
                loc,
            )
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(key_node, "merge keys ('<<') are not supported", loc)
                key = self.build(key_node, loc + ("<key>",))
                if isinstance(key, (dict, list)) or key is None:
                    raise self.fail(key_node, "keys must be strings or numbers", loc)
                if key in out:
                    raise self.fail(key_node, f"duplicate key {key!r}", loc + (key,))
                self.marks[loc + (key,)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                out[key] = self.build(value_node, loc + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        return self.scalars.construct_object(node)


def parse_yaml(text: str | bytes, path: str = "<string>") -> SourceDoc:
    """Parse one YAML document into plain data with marks. Raises `SpecError`."""
    if isinstance(text, bytes):
        if len(text) > MAX_SPEC_BYTES:
            raise SpecError([Issue(path, 1, 1, (), f"file is larger than {MAX_SPEC_BYTES} bytes")])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpecError(
                [Issue(path, 1, 1, (), f"not UTF-8 text (byte {err.start}): is this a YAML spec?")]
            ) from None
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError([Issue(path, 1, 1, (), f"file is larger than {MAX_SPEC_BYTES} bytes")])
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise SpecError([Issue(path, line, 1, (), "binary data (NUL byte): is this a YAML spec?")])
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = err.problem or "invalid YAML"
        context = f" ({err.context})" if err.context else ""
        raise SpecError([Issue(path, line, col, (), f"YAML syntax: {problem}{context}")]) from None
    except yaml.YAMLError as err:  # reader errors: non-printable characters and the like
        raise SpecError([Issue(path, 1, 1, (), f"YAML: {err}")]) from None
    if len(nodes) > 1:
        second = nodes[1]
        raise SpecError(
            [Issue(path, second.start_mark.line + 1, 1, (), "more than one YAML document")]
        )
    if not nodes or nodes[0] is None:
        raise SpecError([Issue(path, 1, 1, (), "spec is empty (expected a mapping of keys)")])
    builder = _Builder(path)
    data = builder.build(nodes[0], ())
    if not isinstance(data, dict):
        raise SpecError(
            [Issue(path, 1, 1, (), f"spec must be a mapping of keys, not a {type(data).__name__}")]
        )
    return SourceDoc(data=data, path=path, text=text, marks=builder.marks)
