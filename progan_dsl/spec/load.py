"""Loading a spec: parse YAML with marks, follow `extends`, apply `--set` overrides, upgrade old
versions, validate, locate errors.

Owns the translation of pydantic errors into `file:line:col: key.path: message (allowed)`, the
spec hash (sha256 of the canonical JSON of the validated spec, so formatting does not change it)
and the texts a run records: the standalone spec (`LoadedSpec.standalone_text`, no `extends`,
overrides applied) and the resolved spec (`LoadedSpec.resolved_yaml`, every default written out).
The models themselves name the allowed keys of an unknown one (`SpecModel`, kinds/base.py).

`extends: base.yaml` (a path relative to the extending file) merges a base spec under this one:
mappings merge key by key, anything else (lists, numbers, strings) is replaced, and a mapping
whose `kind` differs from the base's (a loss, say) replaces the base's mapping as a whole. Each
file states its own `spec_version`, and its own `description` (`NOT_INHERITED`: a derived spec
without one has none). Errors point into the file that wrote the offending key.

`--set KEY.PATH=VALUE` (`overrides=[...]`) sets one key after `extends` is resolved. VALUE is a
YAML scalar or flow value (`10`, `lsgan`, `[4, 8]`, `{kind: lsgan}`); KEY.PATH is dotted, with
list indices and resolutions as numbers (`training.schedule.minibatch.64=16`,
`architecture.generator.block.1.kernel=5` or `block[1]`). Errors in a value name its argument.
"""

from __future__ import annotations

import copy
import difflib
import errno
import hashlib
import json
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from progan_dsl.fsutil import NotRegularFileError, read_regular
from progan_dsl.spec.errors import Issue, SpecError, format_loc
from progan_dsl.spec.models import SPEC_VERSION, Spec
from progan_dsl.spec.partial import rule_problems
from progan_dsl.spec.source import (
    LINE_BREAKS,
    MAX_SPEC_BYTES,
    NON_PRINTABLE,
    Mark,
    SourceDoc,
    dump_yaml,
    parse_value,
    parse_yaml,
)

# Old spec versions are upgraded step by step: UPGRADES[v] turns version v data into v + 1.
UPGRADES: dict[int, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {}

EXTENDS = "extends"  # the key that names a base spec; a loading directive, not a spec field
# Longest chain of `extends`: a base of a base of ... A real project layers two or three specs.
MAX_EXTENDS = 8
# Keys that say what one file is: a spec that extends another writes its own (else the default,
# empty) and never silently carries its base's, which describes another run.
NOT_INHERITED = ("description",)


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with where it came from.

    `doc` holds the merged data and a mark per key (into whichever file wrote it); its `path`
    and `text` are those of the loaded file. `bases` are the files `extends` brought in (the
    nearest first); `overrides` the `--set` arguments applied.
    """

    spec: Spec
    doc: SourceDoc
    hash: str
    bases: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return self.doc.path

    @property
    def standalone(self) -> bool:
        """Whether the loaded file alone gives this spec (no `extends`, no `--set`)."""
        return not self.bases and not self.overrides

    def standalone_text(self) -> str:
        """Spec text that loads on its own to this spec (same hash): the file's own text when it
        stands alone, else the merged keys as YAML, under a comment naming the sources. This is
        what a checkpoint stores."""
        if self.standalone:
            return self.doc.text
        lines = [f"# Spec '{self.spec.name}' (sha256 {self.hash}), standalone: made from"]
        lines += [f"#   {path}" for path in (*reversed(self.bases), self.path)]
        lines += [f"#   --set {arg}" for arg in self.overrides]
        return "\n".join(lines) + "\n" + dump_yaml(self.doc.data)

    def resolved_yaml(self) -> str:
        """The validated spec with every default written out, as YAML; it loads back to the
        same hash (what a run folder records as spec.resolved.yaml)."""
        data = _plain(self.spec.model_dump(mode="python"))
        arch = data["architecture"]
        arch["generator"]["to_rgb"].pop("out", None)  # fixed by the spec rule: not written in specs
        arch["discriminator"]["from_rgb"].pop("out", None)
        head = f"# Spec '{self.spec.name}' with every default filled in (sha256 {self.hash}).\n"
        return head + dump_yaml(data)


def _plain(value: Any) -> Any:
    """Model dump -> YAML-safe data: tuples become lists (int keys stay ints)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# Fields added to the language with "off" (None) as their default: left out of the hash while
# off, so a spec that does not use them keeps the hash it had before they existed (and
# `--resume auto` finds its runs).
HASHED_ONLY_WHEN_SET: tuple[tuple[str, ...], ...] = (("training", "augment"),)


def spec_hash(spec: Spec) -> str:
    data = spec.model_dump(mode="json")
    for *parents, key in HASHED_ONLY_WHEN_SET:
        holder = data
        for parent in parents:
            holder = holder[parent]
        if holder.get(key) is None:
            holder.pop(key, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> LoadedSpec:
    """Read, parse and validate a spec file, following `extends` and applying `--set`
    overrides (`"training.snapshot.keep=5"`). Raises `SpecError` (a `UserError`)."""
    path = Path(path)
    raw = _read(path, None)
    return load_spec_text(raw, str(path), overrides=overrides)


def load_spec_text(
    text: str | bytes,
    path: str = "<string>",
    overrides: Sequence[str] = (),
    *,
    base_dir: str | Path | None = None,
) -> LoadedSpec:
    """Validate spec text; `path` names it in errors. An `extends` path is taken relative to
    `base_dir` (default: the folder of `path`, or the working folder for `<string>`)."""
    doc = parse_yaml(text, path)
    folder = Path(base_dir) if base_dir is not None else _folder(path)
    own = _resolved_file(path)
    doc, bases = _extend(doc, folder, (own,) if own else ())
    doc = _apply_overrides(doc, list(overrides))
    try:
        spec = Spec.model_validate(doc.data)
    except ValidationError as err:
        # the rules whose inputs are valid report now, with the field errors, not in a 2nd pass
        rules = [
            {"type": "spec_rule", "loc": loc, "msg": msg} for loc, msg in rule_problems(doc.data)
        ]
        raise SpecError(_issues(doc, [*err.errors(), *rules])) from None
    return LoadedSpec(
        spec=spec, doc=doc, hash=spec_hash(spec), bases=bases, overrides=tuple(overrides)
    )


# ---- files and extends ----------------------------------------------------------------------


def _read(path: Path, cited: Mark | None, target: str = "") -> bytes:
    """The bytes of a spec file: a regular file of at most `MAX_SPEC_BYTES` (a device such as
    /dev/zero, a named pipe or a folder is refused before it is opened, so nothing blocks or
    fills memory). `cited`: the `extends` key that named it as `target` (errors go there)."""
    where = cited or Mark(str(path), 1, 1)
    what = f"extends {target!r}: " if cited else ""
    loc = (EXTENDS,) if cited else ()
    try:
        return read_regular(path, MAX_SPEC_BYTES)
    except ValueError:  # os.stat refuses a path with a NUL character
        msg = f"{what}the path holds a NUL character"
    except FileNotFoundError:
        msg = f"{what}no such file" + (f" (looked for {_resolve(path)})" if cited else "")
    except NotRegularFileError as err:
        msg = f"{what}{err.strerror}: a spec is a YAML file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            msg = f"{what}a loop of symbolic links (too many levels)"
        elif err.errno == errno.EFBIG:
            msg = f"{what}{err.strerror} (a spec is a page of YAML)"
        else:
            msg = f"{what}cannot read: {err.strerror}"
    raise SpecError([Issue(where.path, where.line, where.col, loc, msg)]) from None


def _resolve(path: Path) -> Path:
    """The absolute path without symbolic links, as far as they resolve (a loop or a broken
    link is left as written: reading the file reports it)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (Python < 3.13)
        return path.absolute()


def _folder(path: str) -> Path:
    return Path(path).parent if not path.startswith("<") else Path.cwd()


def _resolved_file(path: str) -> Path | None:
    return None if path.startswith("<") else _resolve(Path(path))


def _extend(
    doc: SourceDoc, folder: Path, chain: tuple[Path, ...]
) -> tuple[SourceDoc, tuple[str, ...]]:
    """Upgrade `doc`, and if it `extends` a base, load the base (recursively) and merge `doc`
    over it. Returns the merged doc and the base files, nearest first."""
    doc = SourceDoc(data=_upgrade(doc), path=doc.path, text=doc.text, marks=doc.marks)
    if EXTENDS not in doc.data:
        return doc, ()
    target = doc.data[EXTENDS]
    cited = doc.where((EXTENDS,))
    if not isinstance(target, str) or not target.strip():
        raise _error(
            cited,
            (EXTENDS,),
            f"extends names the base spec file (a path string "
            f"relative to this file), got {target!r}",
        )
    if "\x00" in target:
        raise _error(cited, (EXTENDS,), f"extends {target!r}: the path holds a NUL character")
    base_path = folder / target
    resolved = _resolve(base_path)
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(resolved) :], resolved))
        raise _error(cited, (EXTENDS,), f"extends cycle: {cycle}")
    if len(chain) > MAX_EXTENDS:
        raise _error(cited, (EXTENDS,), f"more than {MAX_EXTENDS} levels of extends")
    raw = _read(base_path, cited, target)
    base, bases = _extend(parse_yaml(raw, str(base_path)), base_path.parent, (*chain, resolved))
    child = SourceDoc(
        data={k: v for k, v in doc.data.items() if k != EXTENDS},
        path=doc.path,
        text=doc.text,
        marks={k: m for k, m in doc.marks.items() if k[:1] != (EXTENDS,)},
    )
    return _merge_docs(base, child), (str(base_path), *bases)


def _merge_docs(base: SourceDoc, child: SourceDoc) -> SourceDoc:
    """`child` over `base`, less the keys a file writes for itself (`NOT_INHERITED`)."""
    own = {(key,) for key in NOT_INHERITED}
    marks = {loc: mark for loc, mark in base.marks.items() if loc[:1] not in own}
    base_data = {k: v for k, v in base.data.items() if k not in NOT_INHERITED}
    data = _merge(base_data, child.data, (), marks)
    marks.update(child.marks)
    return SourceDoc(data=data, path=child.path, text=child.text, marks=marks)


def _merge(base: Any, child: Any, loc: tuple[Any, ...], marks: dict[tuple[Any, ...], Mark]) -> Any:
    """`child` over `base`: mappings merge key by key (unless their `kind`s differ), anything
    else replaces. The base's marks under a replaced value are dropped."""
    both = isinstance(base, dict) and isinstance(child, dict)
    if both and not ("kind" in base and "kind" in child and base["kind"] != child["kind"]):
        out = dict(base)
        for key, value in child.items():
            out[key] = _merge(base[key], value, loc + (key,), marks) if key in base else value
        return out
    _drop(marks, loc)
    return child


def _drop(marks: dict[tuple[Any, ...], Mark], loc: tuple[Any, ...]) -> None:
    for key in [k for k in marks if k[: len(loc)] == loc and len(k) > len(loc)]:
        del marks[key]


def _upgrade(doc: SourceDoc) -> dict[str, Any]:
    data = doc.data
    version = data.get("spec_version")
    if version is None:
        raise _error(
            doc.where(()),
            ("spec_version",),
            f"missing; every spec starts with 'spec_version: {SPEC_VERSION}'",
        )
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 1 <= version <= SPEC_VERSION
    ):
        supported = ", ".join(str(v) for v in range(1, SPEC_VERSION + 1))
        raise _error(
            doc.where(("spec_version",)),
            ("spec_version",),
            f"unsupported version {version!r} (supported: {supported})",
        )
    while version < SPEC_VERSION:
        data = UPGRADES[version](data)
        version += 1
    return data


def _error(mark: Mark, loc: tuple[Any, ...], msg: str) -> SpecError:
    return SpecError([Issue(mark.path, mark.line, mark.col, loc, msg)])


# ---- --set overrides --------------------------------------------------------------------------

_KEY_PART = re.compile(r"\[(\d+)\]|([A-Za-z_][A-Za-z0-9_]*|\d+)")
SET_USAGE = "expected KEY.PATH=VALUE, e.g. --set training.snapshot.keep=5"


def parse_key_path(key: str, source: str) -> tuple[Any, ...]:
    """`training.schedule.minibatch.64` -> ('training', 'schedule', 'minibatch', 64); list
    indices may also be written `block[1]`. Numbers become ints (resolutions, indices)."""
    parts: list[Any] = []
    for segment in key.split("."):
        pos_in = 0
        if not segment:
            raise _error(Mark(source, 0, 0), (), f"empty key in {key!r} ({SET_USAGE})")
        while pos_in < len(segment):
            match = _KEY_PART.match(segment, pos_in)
            if not match or (match.group(2) and pos_in > 0):
                raise _error(
                    Mark(source, 0, 0),
                    (),
                    f"{segment!r} is not a key (letters, digits and '_', or a number; "
                    f"list items as 'block.1' or 'block[1]'): {SET_USAGE}",
                )
            index, name = match.groups()
            parts.append(int(index) if index is not None else int(name) if name.isdigit() else name)
            pos_in = match.end()
    return tuple(parts)


def _check_one_line(arg: str) -> None:
    """Refuse a `--set` argument that the stored spec could not record on one comment line
    (`standalone_text`): a line break, which would end the comment and break the stored spec,
    or a character YAML does not allow in a file (control characters)."""
    bad = next((c for c in arg if c in LINE_BREAKS or NON_PRINTABLE.match(c)), None)
    if bad is None:
        return
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in arg)
    if bad in LINE_BREAKS:
        msg = (
            f"holds a line break (U+{ord(bad):04X}); an argument is one line: write a list or "
            "mapping in flow style ([4, 8], {kind: lsgan}) and a line break inside a string as "
            '\\n in double quotes ("a\\nb")'
        )
    else:
        msg = (
            f"holds the control character U+{ord(bad):04X}, which a spec file cannot hold: "
            f'write it as an escape in a double-quoted string ("\\x{ord(bad):02x}")'
        )
    raise _error(Mark(f"--set {shown}", 0, 0), (), msg)


def _apply_overrides(doc: SourceDoc, overrides: list[str]) -> SourceDoc:
    if not overrides:
        return doc
    data = copy.deepcopy(doc.data)
    marks = dict(doc.marks)
    for arg in overrides:
        _check_one_line(arg)
        source = f"--set {arg}"
        key, sep, text = arg.partition("=")
        if not sep or not key.strip():
            raise _error(Mark(source, 0, 0), (), SET_USAGE)
        loc = parse_key_path(key.strip(), source)
        if loc[:1] in ((EXTENDS,), ("spec_version",)):
            raise _error(
                Mark(source, 0, 0), loc[:1], f"'{loc[0]}' cannot be set from the command line"
            )
        value, value_marks = parse_value(text, source, loc)
        _set(data, loc, value, source, marks)
        _drop(marks, loc)
        marks.update(value_marks)
        marks[loc] = Mark(source, 0, 0)
    return SourceDoc(data=data, path=doc.path, text=doc.text, marks=marks)


def _set(
    data: dict[Any, Any],
    loc: tuple[Any, ...],
    value: Any,
    source: str,
    marks: dict[tuple[Any, ...], Mark],
) -> None:
    node: Any = data
    for depth, part in enumerate(loc):
        here = loc[: depth + 1]
        last = depth == len(loc) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
                return
            if part not in node or node[part] is None:
                node[part] = _missing_section(here)
                marks[here] = Mark(source, 0, 0)
            node = node[part]
        elif isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                size = len(node)
                raise _error(
                    Mark(source, 0, 0),
                    here,
                    f"{format_loc(loc[:depth])} is a list of {size} item(s): use an index "
                    f"0..{size - 1}"
                    if size
                    else f"{format_loc(loc[:depth])} is an empty list",
                )
            if last:
                node[part] = value
                return
            node = node[part]
        else:
            raise _error(
                Mark(source, 0, 0),
                here,
                f"{format_loc(loc[:depth])} is {node!r}, not a mapping: there is no "
                f"'{part}' inside it",
            )


def _missing_section(loc: tuple[Any, ...]) -> dict[str, Any]:
    """The mapping to create when `--set` reaches into a section the spec leaves at its default:
    empty, or `{kind: ...}` with the default's kind for a section chosen by kind (the loss), so
    that `--set training.loss.gp_lambda=5` sets a key of the default WGAN-GP loss."""
    model: Any = Spec
    default: Any = None
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return {}
        info = fields[part]
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            model = type(default)
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            model, default = info.annotation, None  # a required section (architecture, training)
        else:
            return {}
    kind = getattr(default, "kind", None)
    return {"kind": kind} if isinstance(kind, str) else {}


# ---- error translation -----------------------------------------------------------------------

_KEY_ERRORS = ("missing", "extra_forbidden", "unknown_key")


def _data_loc(data: Any, loc: tuple[Any, ...], kind: str) -> tuple[Any, ...]:
    """Drop the parts of a pydantic loc that are not keys of the data (union member tags such as
    'wgan_gp' or 'constrained-float'); keep a missing or unknown key itself."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif kind in _KEY_ERRORS and i == len(loc) - 1 and isinstance(node, dict):
            out.append(part)  # the missing or unknown key itself
            node = None
    return tuple(out)


def _get(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _issues(doc: SourceDoc, errors: list[Any]) -> list[Issue]:
    """Located issues, one per place. Of the members of a union (`600` or a table), keep those
    that got furthest into the data: a table with one bad entry is reported at that entry."""
    located = _tuple_lengths(
        doc.data, [(_data_loc(doc.data, tuple(e["loc"]), e["type"]), e) for e in errors]
    )
    deepest = [
        (loc, e)
        for loc, e in located
        if not any(
            len(other) > len(loc) and other[: len(loc)] == loc and _is_union(e, loc)
            for other, _ in located
        )
    ]
    issues = [_issue(doc, loc, e) for loc, e in deepest]
    # a union reports one error per member at the same key: keep the first
    unique = {(i.path, i.line, i.col, i.loc): i for i in reversed(issues)}
    return list(unique.values())


def _tuple_lengths(data: Any, located: list[tuple[tuple[Any, ...], Any]]) -> list[Any]:
    """A wrong value for a fixed-length list (`base_shape: [4]`): pydantic reports each absent
    item as a missing key, the list as too long, or a scalar as not a tuple; make each one
    `tuple_length` error at the value, with the length the field needs."""
    out, seen = [], set()
    for loc, e in located:
        size = _tuple_size(loc)
        last = e["loc"][-1] if e["loc"] else None
        wrong = (
            e["type"] == "missing" and isinstance(last, int) and isinstance(_get(data, loc), list)
        ) or (e["type"] in ("too_long", "tuple_type") and tuple(e["loc"]) == loc)
        if size is None or not wrong:
            out.append((loc, e))
        elif loc not in seen:
            seen.add(loc)
            out.append((loc, {"type": "tuple_length", "loc": loc, "msg": "", "ctx": {"n": size}}))
    return out


def _field(loc: tuple[Any, ...]) -> Any:
    """The pydantic field of the spec at `loc` (keys of nested sections only), or None."""
    model: Any = Spec
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    return info


def _tuple_size(loc: tuple[Any, ...]) -> int | None:
    """The length of the fixed-length list field at `loc` (`tuple[int, int]`: 2), else None."""
    info = _field(loc)
    if info is None or typing.get_origin(info.annotation) is not tuple:
        return None
    args = typing.get_args(info.annotation)
    return None if Ellipsis in args else len(args)


def _is_union(err: Any, data_loc: tuple[Any, ...]) -> bool:
    """Whether the error came from one member of a union (its loc has a member tag)."""
    return len(tuple(err["loc"])) > len(data_loc) and err["type"] not in _KEY_ERRORS


def _issue(doc: SourceDoc, loc: tuple[Any, ...], err: Any) -> Issue:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        where = doc.where(loc[:-1])
        message = f"missing required key '{loc[-1]}'"
    elif kind == "unknown_key":  # a SpecModel names its allowed keys (kinds/base.py)
        where = doc.where(loc)
        message = msg
    elif kind == "extra_forbidden":
        where = doc.where(loc)
        message = f"unknown key '{loc[-1]}'"
    elif kind == "union_tag_invalid":
        loc = loc + ("kind",)
        where = doc.where(loc)
        tags = [t.strip("' ") for t in str(err["ctx"]["expected_tags"]).split(",")]
        got = err["ctx"]["tag"]
        close = difflib.get_close_matches(str(got), tags, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        message = f"unknown kind '{got}' ({hint}allowed: {', '.join(tags)})"
    elif kind == "string_pattern_mismatch":
        where = doc.where(loc)
        message = (
            f"{_get(doc.data, loc)!r} is not an identifier (letters, digits and '_', "
            "starting with a letter): names reach generated code"
        )
    elif kind == "tuple_length":
        where = doc.where(loc)
        value = _get(doc.data, loc)
        got = f"{len(value)} ({value!r})" if isinstance(value, list) else repr(value)
        about = _field(loc).description or ""
        message = f"a list of {err['ctx']['n']} items is needed, got {got}" + (
            f": {about[0].lower()}{about[1:]}" if about else ""
        )
    elif kind in ("spec_rule", "layer_type"):
        where = doc.where(loc)
        message = msg
    else:
        where = doc.where(loc)
        value = _get(doc.data, loc)
        shown = "null" if value is None else repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        written = loc and (value is not None or doc.has(loc))
        message = f"{msg[0].lower()}{msg[1:]} (got {shown})" if written else msg
        if msg.startswith("Value error, "):
            message = msg[len("Value error, ") :]
    return Issue(where.path, where.line, where.col, loc, message)
