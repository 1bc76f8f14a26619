"""Loading a spec file: parse YAML with marks, upgrade old versions, validate, locate errors.

Owns the translation of pydantic errors into `file:line:col: key.path: message (allowed)` and the
spec hash (sha256 of the canonical JSON of the validated spec, so formatting does not change it).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from progan_dsl.kinds import get_kind
from progan_dsl.spec.errors import Issue, SpecError
from progan_dsl.spec.models import SPEC_VERSION, Spec
from progan_dsl.spec.source import SourceDoc, parse_yaml

# Old spec versions are upgraded step by step: UPGRADES[v] turns version v data into v + 1.
UPGRADES: dict[int, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with where it came from."""

    spec: Spec
    doc: SourceDoc
    hash: str

    @property
    def path(self) -> str:
        return self.doc.path


def spec_hash(spec: Spec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_spec(path: str | Path) -> LoadedSpec:
    """Read, parse and validate a spec file. Raises `SpecError` (a `UserError`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError([Issue(str(path), 1, 1, (), "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Issue(str(path), 1, 1, (), "is a directory, not a spec file")]) from None
    except OSError as err:
        raise SpecError([Issue(str(path), 1, 1, (), f"cannot read: {err.strerror}")]) from None
    return load_spec_text(raw, str(path))


def load_spec_text(text: str | bytes, path: str = "<string>") -> LoadedSpec:
    doc = parse_yaml(text, path)
    data = _upgrade(doc)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        issues = [_issue(doc, e) for e in err.errors()]
        # a union reports one error per member at the same key: keep the first
        unique = {(i.line, i.col, i.loc): i for i in reversed(issues)}
        raise SpecError(list(unique.values())) from None
    return LoadedSpec(spec=spec, doc=doc, hash=spec_hash(spec))


def _upgrade(doc: SourceDoc) -> dict[str, Any]:
    data = doc.data
    version = data.get("spec_version")
    if version is None:
        line, col = doc.mark(())
        raise SpecError([Issue(doc.path, line, col, ("spec_version",),
                               f"missing; every spec starts with 'spec_version: {SPEC_VERSION}'")])
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SPEC_VERSION:
        line, col = doc.mark(("spec_version",))
        supported = ", ".join(str(v) for v in range(1, SPEC_VERSION + 1))
        raise SpecError([Issue(doc.path, line, col, ("spec_version",),
                               f"unsupported version {version!r} (supported: {supported})")])
    while version < SPEC_VERSION:
        data = UPGRADES[version](data)
        version += 1
    return data


# ---- error translation -----------------------------------------------------------------------


def _data_loc(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the parts of a pydantic loc that are not keys of the data (union tags)."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, (dict, list)) and part == loc[-1]:
            out.append(part)  # the missing or unknown key itself
            node = None
        # else: a union tag such as 'wgan_gp' or 'function-plain[...]': skip it
    return tuple(out)


def _get(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        data = data[part] if isinstance(data, (dict, list)) else None
    return data


def _model_classes(annotation: Any, value: Any) -> list[type[BaseModel]]:
    """The model classes a value at this annotation may be validated as."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        args = typing.get_args(annotation)
        if args[0].__name__ == "LayerBase" and isinstance(value, dict):
            try:
                params = get_kind(str(value.get("kind"))).params
                return [params] if params else []
            except KeyError:
                return []
        return _model_classes(args[0], value)
    if origin in (typing.Union, types.UnionType):
        out: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            out += _model_classes(arg, value)
        if isinstance(value, dict) and "kind" in value:
            tagged = [m for m in out if "kind" in m.model_fields
                      and value["kind"] in typing.get_args(m.model_fields["kind"].annotation)]
            return tagged or out
        return out
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _allowed_keys(data: Any, parent: tuple[Any, ...]) -> list[str]:
    models = _walk_models(data, parent)
    keys: list[str] = []
    for model in models:
        keys += [k for k in model.model_fields if k not in keys]
    return keys


def _walk_models(data: Any, loc: tuple[Any, ...]) -> list[type[BaseModel]]:
    """Walk from `Spec` down `loc` through fields, lists, dicts and tagged unions."""
    current: list[tuple[Any, Any]] = [(Spec, data)]  # (annotation, value)
    for part in loc:
        step: list[tuple[Any, Any]] = []
        for annotation, value in current:
            child = _get(value, (part,))
            for model in _model_classes(annotation, value):
                field = model.model_fields.get(part) if isinstance(part, str) else None
                if field is not None:
                    step.append((field.annotation, child))
            for elem in _element_annotations(annotation):
                step.append((elem, child))
        current = step
    out: list[type[BaseModel]] = []
    for annotation, value in current:
        out += _model_classes(annotation, value)
    return out


def _element_annotations(annotation: Any) -> list[Any]:
    """X for list[X], dict[K, X], and through Optional/Annotated wrappers."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner = typing.get_args(annotation)[0]
        return [] if getattr(inner, "__name__", "") == "LayerBase" else _element_annotations(inner)
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out += _element_annotations(arg)
        return out
    if origin in (list, tuple):
        return [typing.get_args(annotation)[0]]
    if origin is dict:
        return [typing.get_args(annotation)[1]]
    return []


def _issue(doc: SourceDoc, err: Any) -> Issue:
    loc = _data_loc(doc.data, tuple(err["loc"]))
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        line, col = doc.mark(loc[:-1])
        message = f"missing required key '{loc[-1]}'"
    elif kind == "extra_forbidden":
        line, col = doc.mark(loc)
        allowed = _allowed_keys(doc.data, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        message = f"unknown key '{loc[-1]}' ({hint}allowed: {', '.join(allowed)})"
    elif kind == "union_tag_invalid":
        loc = loc + ("kind",)
        line, col = doc.mark(loc)
        tags = [t.strip("' ") for t in str(err["ctx"]["expected_tags"]).split(",")]
        got = err["ctx"]["tag"]
        close = difflib.get_close_matches(str(got), tags, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        message = f"unknown kind '{got}' ({hint}allowed: {', '.join(tags)})"
    elif kind == "string_pattern_mismatch":
        line, col = doc.mark(loc)
        message = (f"{_get(doc.data, loc)!r} is not an identifier (letters, digits and '_', "
                   "starting with a letter): names reach generated code")
    elif kind == "spec_rule" or kind == "layer_type":
        line, col = doc.mark(loc)
        message = msg
    else:
        line, col = doc.mark(loc)
        value = _get(doc.data, loc)
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        message = f"{msg[0].lower()}{msg[1:]} (got {shown})" if loc and value is not None else msg
        if msg.startswith("Value error, "):
            message = msg[len("Value error, "):]
    return Issue(doc.path, line, col, loc, message)

