"""jinja2 environment and rendering; templates lay out view models, nothing more."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from progan_dsl.codegen.view import ModuleView


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("progan_dsl.codegen", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_stage(view: ModuleView) -> str:
    return environment().get_template("stage_module.py.j2").render(m=view)


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
