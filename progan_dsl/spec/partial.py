"""The cross-field rules of a spec whose fields are not all valid, so that one run reports both.

Owns `rule_problems`: pydantic runs `Spec`'s rules (`models.RULES`) only once every field is
valid, which would report a spec's problems in two passes. Here the rules run on a partial spec
instead: each section is built field by field, a field that validates holds its value (a field
left out holds its default), and one that does not, or a required one left out, holds
`Unchecked`, which refuses every use. A rule that touches an `Unchecked` value is left for when
the fields are fixed; every other rule reports now. A section with validators of its own
(`Channels`: exactly one of rule or table) is kept whole or not at all, so no rule sees a section
its validators would refuse.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from progan_dsl.spec.models import RULES, RuleResult, Spec

Loc = tuple[Any, ...]


class _Unavailable(Exception):
    """A rule touched a value that did not validate."""


class Unchecked:
    """Stands for a field that did not validate: any use (reading an attribute, iterating,
    comparing, converting to a number) raises `_Unavailable`, so the rule that needs it stops."""

    __slots__ = ("loc",)

    def __init__(self, loc: Loc) -> None:
        self.loc = loc

    def __repr__(self) -> str:
        return f"Unchecked({self.loc!r})"

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _Unavailable(self.loc)

    __getattr__ = _refuse
    __iter__ = __len__ = __getitem__ = __contains__ = __bool__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse  # type: ignore[assignment]
    __hash__ = __int__ = __float__ = __index__ = __str__ = __format__ = _refuse  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _refuse
    __pow__ = __rpow__ = __neg__ = __abs__ = _refuse


def rule_problems(data: dict[str, Any]) -> RuleResult:
    """(key path, message) of every rule of `models.RULES` that can run on the valid fields of
    `data` (a spec's merged data, after `extends` and `--set`)."""
    spec = _fields(Spec, data, ())
    out: RuleResult = []
    for rule in RULES:
        try:
            out += rule(spec)
        # A rule may also assume what a failed validation would have guaranteed: it too waits.
        except Exception:  # noqa: BLE001
            continue
    return out


def _section(model: type[BaseModel], data: Any, loc: Loc) -> Any:
    """`model` validated whole if `data` is valid, else built field by field (or `Unchecked`
    when `model` has validators of its own, which a partial section would bypass)."""
    if not isinstance(data, dict):
        return Unchecked(loc)
    try:
        return model.model_validate(data)
    except ValidationError:
        pass
    if _own_validators(model):
        return Unchecked(loc)
    return _fields(model, data, loc)


def _fields(model: type[BaseModel], data: dict[str, Any], loc: Loc) -> Any:
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        here = loc + (name,)
        if name not in data:
            values[name] = (
                Unchecked(here)
                if info.is_required()
                else info.get_default(call_default_factory=True)
            )
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            values[name] = _section(info.annotation, data[name], here)
        else:
            try:
                values[name] = _adapter(model, name).validate_python(data[name])
            except ValidationError:
                values[name] = Unchecked(here)
    given = set(data) & set(model.model_fields)
    return model.model_construct(_fields_set=given, **values)


def _own_validators(model: type[BaseModel]) -> bool:
    """Whether `model` has field validators or before/after model validators (the wrap
    validator every `SpecModel` has only rewrites unknown-key errors)."""
    decorators = model.__pydantic_decorators__
    modes = [d.info.mode for d in decorators.model_validators.values()]
    return bool(decorators.field_validators) or any(mode != "wrap" for mode in modes)


_ADAPTERS: dict[tuple[type[BaseModel], str], TypeAdapter[Any]] = {}


def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """A validator for one field of `model`: its type, constraints and discriminator, under the
    model's float rule (no NaN or infinity)."""
    key = (model, name)
    if key not in _ADAPTERS:
        info = model.model_fields[name]
        extra: list[Any] = list(info.metadata)
        if info.discriminator is not None:
            extra.append(Field(discriminator=info.discriminator))
        annotated: Any = Annotated[(info.annotation, *extra)] if extra else info.annotation
        config = ConfigDict(allow_inf_nan=model.model_config.get("allow_inf_nan", True))
        _ADAPTERS[key] = TypeAdapter(annotated, config=config)
    return _ADAPTERS[key]
