"""JSON Schema of the spec language, for editors (yaml-language-server) and docs.

One field declaration gives validation, schema and docs: the schema comes from the pydantic
models, with the `Layer` definition filled in from the layer-kind registry.
"""

from __future__ import annotations

import json
from typing import Any

from progan_dsl.kinds import get_kind, spec_kind_names
from progan_dsl.spec.load import EXTENDS
from progan_dsl.spec.models import Spec

SCHEMA_ID = "https://progan-dsl.invalid/schema/progan-spec.schema.json"


def _link_layers(node: Any) -> Any:
    """Replace the placeholder that models.Layer puts in the schema by a $ref to `Layer`."""
    if isinstance(node, dict):
        if node.get("x-progan-layer"):
            return {"$ref": "#/$defs/Layer"}
        return {k: _link_layers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_link_layers(v) for v in node]
    return node


def json_schema() -> dict[str, Any]:
    schema = _link_layers(Spec.model_json_schema())
    defs = schema.setdefault("$defs", {})
    variants = []
    for name in spec_kind_names():
        params = get_kind(name).params
        assert params is not None
        sub = params.model_json_schema(ref_template="#/$defs/{model}")
        for key, value in sub.pop("$defs", {}).items():
            defs.setdefault(key, value)
        defs[params.__name__] = sub
        variants.append({"$ref": f"#/$defs/{params.__name__}"})
    defs["Layer"] = {"oneOf": variants, "description": "One layer; `kind` selects its parameters."}
    # `extends` is a loading directive (spec/load.py), not a field: it never reaches the model,
    # so it changes no hash; editors still need to know the key.
    schema["properties"][EXTENDS] = {
        "type": "string",
        "title": "Extends",
        "description": "Base spec file (path relative to this file) that this spec changes: "
        "mappings merge key by key, lists and values are replaced.",
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "progan-dsl spec"
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
