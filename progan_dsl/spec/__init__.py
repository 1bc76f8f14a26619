"""The spec language: pydantic models, YAML loading with source marks, `extends` and `--set`,
located errors, schema, node names.

Does not import torch (tests check `sys.modules`).
"""

from progan_dsl.spec.errors import Issue, SpecError
from progan_dsl.spec.load import LoadedSpec, load_spec, load_spec_text, spec_hash
from progan_dsl.spec.models import (
    SPEC_VERSION,
    Architecture,
    Spec,
    TrainingSpec,
    minibatch_group_problems,
    require_whole_groups,
)

__all__ = [
    "SPEC_VERSION",
    "Architecture",
    "Issue",
    "LoadedSpec",
    "Spec",
    "SpecError",
    "TrainingSpec",
    "load_spec",
    "load_spec_text",
    "minibatch_group_problems",
    "require_whole_groups",
    "spec_hash",
]
