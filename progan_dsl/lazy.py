"""Lazy re-exports for package `__init__` files (PEP 562), so importing a package (and so every
CLI's `--help`) does not load torch, onnx or onnxruntime until a name is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package` that import `names[attr]` (a module path) on
    first use of `attr`."""

    def __getattr__(attr: str) -> Any:
        module = names.get(attr)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(module), attr)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
