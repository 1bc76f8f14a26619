"""Execute generated source in-process. The source is registered with `linecache` under a
stable pseudo-filename, so tracebacks and debuggers show the generated lines."""

from __future__ import annotations

import linecache
from typing import Any


def load_class(source: str, filename: str, class_name: str) -> Any:
    """Compile and execute `source`, returning the class `class_name` it defines."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    code = compile(source, filename, "exec")
    namespace: dict[str, Any] = {"__name__": "progan_generated", "__file__": filename}
    exec(code, namespace)  # noqa: S102 - our own generated code, built from validated names only
    return namespace[class_name]
