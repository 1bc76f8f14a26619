"""YAML loading with source marks, hardened against hostile input.

Owns: turning spec text into plain Python data plus a map from key paths to where they were
written (file, 1-based line and column). Only the YAML core types are built (no tags that
construct objects), aliases are expanded against a node budget (an alias bomb fails fast),
nesting is bounded (no RecursionError, also for self-referencing aliases), duplicate keys are
errors, and the text size is bounded. Bytes that are not UTF-8 and characters YAML refuses are
reported at their own line and column. Everything that goes wrong here is a `SpecError` with a
location. Also owns the one YAML writer for spec data (`dump_yaml`), whose text this loader reads
back to equal data (a string such as '1e5' is quoted, not read back as a number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

from progan_dsl.spec.errors import Issue, SpecError

Path_ = tuple[Any, ...]

MAX_SPEC_BYTES = 1_000_000  # a spec is a page of YAML; anything this large is not one
MAX_NODES = 100_000  # expanded nodes; a billion-laughs document passes this within microseconds
# Deepest nesting of maps and lists. The shipped specs nest 6 levels (architecture.generator.
# overrides.64[0].taps); 50 leaves room for any real spec and keeps the recursive YAML composer,
# our builder and pydantic far from Python's recursion limit (1000 frames).
MAX_DEPTH = 50

_STD_TAGS = {
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does: `1e-8` and `1e5` are floats
    (YAML 1.1 wants a dot and a signed exponent, `1.0e-8`, and reads `1e-8` as a string)."""


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, resolving plain scalars as `_Loader` reads them: a string such as
    '1e5' is quoted (else it would read back as a float)."""


# YAML 1.2 floats without a dot or sign in the exponent; the dumper must know them too
_FLOAT_1_2 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))

# Characters a YAML reader takes as line breaks, and those a YAML stream may not hold at all
LINE_BREAKS = "\n\r\x85\u2028\u2029"
NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE


def _represent_str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    # outside double quotes a string holding a line break other than \n would read back changed
    # (NEL folds to a space): such strings are written double-quoted, the breaks escaped
    style = '"' if any(c in LINE_BREAKS and c != "\n" for c in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """Plain data as YAML text that `parse_yaml` reads back to equal data (same types)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


class Mark(NamedTuple):
    """Where a key or value was written: a file and a 1-based line and column. Line 0 means a
    place without lines (a `--set KEY=VALUE` argument): it prints as the path alone."""

    path: str
    line: int
    col: int


@dataclass
class SourceDoc:
    """Parsed spec data with a mark for every key path. `path` and `text` are those of the file
    that was loaded; after `extends` or `--set` some marks point into other sources."""

    data: Any
    path: str
    text: str
    marks: dict[Path_, Mark] = field(default_factory=dict)

    def where(self, loc: Path_) -> Mark:
        """The mark of the deepest prefix of `loc` that the document has (its start if none)."""
        loc = tuple(loc)
        while loc:
            if loc in self.marks:
                return self.marks[loc]
            loc = loc[:-1]
        return self.marks.get((), Mark(self.path, 1, 1))

    def mark(self, loc: Path_) -> tuple[int, int]:
        """(line, col) of `where(loc)`."""
        where = self.where(loc)
        return where.line, where.col

    def has(self, loc: Path_) -> bool:
        """Whether `loc` itself was written in a source (not only a prefix of it)."""
        return tuple(loc) in self.marks


def position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, col) of character `index` of `text`."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _fail(path: str, line: int, col: int, msg: str, loc: Path_ = ()) -> SpecError:
    return SpecError([Issue(path, line, col, loc, msg)])


class _Builder:
    """Builds plain data from composed YAML nodes, recording a mark per key path."""

    def __init__(self, path: str, *, lines: bool = True) -> None:
        self.path = path
        self.lines = lines  # False: every mark is the source itself (line 0), as for --set
        self.budget = MAX_NODES
        self.marks: dict[Path_, Mark] = {}
        self.scalars = _Loader("")  # only its scalar constructors are used

    def mark_of(self, node: yaml.Node) -> Mark:
        if not self.lines:
            return Mark(self.path, 0, 0)
        return Mark(self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: yaml.Node, msg: str, loc: Path_ = ()) -> SpecError:
        mark = self.mark_of(node)
        return _fail(mark.path, mark.line, mark.col, msg, loc)

    def build(self, node: yaml.Node, loc: Path_, depth: int = 0) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self.fail(
                node,
                f"document expands to more than {MAX_NODES} nodes "
                "(an alias bomb?); specs are small: write the values out",
                loc,
            )
        if depth > MAX_DEPTH:  # also stops an alias that contains itself
            raise self.fail(node, f"nested deeper than {MAX_DEPTH} levels; specs are shallow", loc)
        self.marks.setdefault(loc, self.mark_of(node))
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
                key = self.build(key_node, loc + ("<key>",), depth + 1)
                if isinstance(key, (dict, list)) or key is None:
                    raise self.fail(key_node, "keys must be strings or numbers", loc)
                if key in out:
                    raise self.fail(key_node, f"duplicate key {key!r}", loc + (key,))
                self.marks[loc + (key,)] = self.mark_of(key_node)
                out[key] = self.build(value_node, loc + (key,), depth + 1)
            self.marks.pop(loc + ("<key>",), None)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,), depth + 1) for i, item in enumerate(node.value)]
        try:
            return self.scalars.construct_object(node)
        except (ValueError, KeyError, TypeError, yaml.YAMLError):  # e.g. `!!int abc`, `!!bool x`
            short = node.tag.rsplit(":", 1)[-1]
            raise self.fail(node, f"{node.value!r} is not a valid {short}", loc) from None


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        start = err.start
        line = raw.count(b"\n", 0, start) + 1
        line_start = raw.rfind(b"\n", 0, start) + 1
        col = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
        raise _fail(
            path,
            line,
            col,
            f"not UTF-8 text (byte {start}: 0x{raw[start]:02x}): is this a YAML spec? "
            "Save it as UTF-8",
        ) from None


def _check_text(text: str, path: str) -> None:
    if len(text) > MAX_SPEC_BYTES:
        raise _fail(path, 1, 1, f"file is larger than {MAX_SPEC_BYTES} bytes")
    if "\x00" in text:
        line, col = position(text, text.index("\x00"))
        raise _fail(path, line, col, "binary data (NUL byte): is this a YAML spec?")


def _check_depth(text: str, path: str) -> None:
    """Refuse deep nesting before the (recursive) composer sees it; the parser is iterative."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                raise _fail(
                    path, line, col, f"nested deeper than {MAX_DEPTH} levels; specs are shallow"
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _compose(text: str, path: str, *, lines: bool = True) -> list[yaml.Node]:
    """Compose the YAML documents of `text`; every YAML error becomes a located `SpecError`."""

    def at(line: int, col: int) -> tuple[int, int]:
        return (line, col) if lines else (0, 0)

    try:
        _check_depth(text, path)
        return list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = at(*((mark.line + 1, mark.column + 1) if mark else (1, 1)))
        problem = err.problem or "invalid YAML"
        context = f" ({err.context})" if err.context else ""
        raise _fail(path, line, col, f"YAML syntax: {problem}{context}") from None
    except yaml.reader.ReaderError as err:  # characters YAML does not allow in a stream
        line, col = at(*position(text, err.position))
        code = err.character if isinstance(err.character, int) else ord(err.character)
        raise _fail(
            path,
            line,
            col,
            f"character U+{code:04X} is not allowed in YAML (control and other special "
            "characters): remove it, or write it as an escape such as \\x07 in a double-quoted "
            "string",
        ) from None
    except yaml.YAMLError as err:
        raise _fail(path, *at(1, 1), f"YAML: {err}") from None


def _what(value: Any) -> str:
    """`a list`, `a string ('text')`, `a number (5)`: a value's kind as a user reads it."""
    if isinstance(value, list):
        return "a list"
    kind = {bool: "a boolean", str: "a string", int: "a number", float: "a number"}
    shown = repr(value)
    return (
        f"{kind.get(type(value), 'a value')} ({shown if len(shown) <= 40 else shown[:37] + '...'})"
    )


def parse_yaml(text: str | bytes, path: str = "<string>") -> SourceDoc:
    """Parse one YAML document into plain data with marks. Raises `SpecError`."""
    if isinstance(text, bytes):
        if len(text) > MAX_SPEC_BYTES:
            raise _fail(path, 1, 1, f"file is larger than {MAX_SPEC_BYTES} bytes")
        text = _decode(text, path)
    _check_text(text, path)
    nodes = _compose(text, path)
    if len(nodes) > 1:
        raise _fail(path, nodes[1].start_mark.line + 1, 1, "more than one YAML document")
    if not nodes or nodes[0] is None:
        raise _fail(path, 1, 1, "spec is empty (expected a mapping of keys)")
    builder = _Builder(path)
    data = builder.build(nodes[0], ())
    if not isinstance(data, dict):
        line, col = builder.mark_of(nodes[0])[1:]  # where the value starts, not the document
        if data is None:
            raise _fail(path, line, col, "spec is empty (expected a mapping of keys)")
        raise _fail(path, line, col, f"spec must be a mapping of keys, not {_what(data)}")
    return SourceDoc(data=data, path=path, text=text, marks=builder.marks)


def parse_value(text: str, source: str, loc: Path_) -> tuple[Any, dict[Path_, Mark]]:
    """Parse one YAML value (a scalar or a flow collection such as `[4, 8]` or `{kind: lsgan}`),
    as written after `--set KEY=`, with the same hardening as a file. Every mark is `source`
    (line 0). An empty text is null."""
    _check_text(text, source)
    if not text.strip():
        return None, {loc: Mark(source, 0, 0)}
    nodes = _compose(text, source, lines=False)
    if len(nodes) != 1 or nodes[0] is None:
        raise _fail(source, 0, 0, "expected one YAML value after '='")
    builder = _Builder(source, lines=False)
    value = builder.build(nodes[0], loc)
    return value, builder.marks
