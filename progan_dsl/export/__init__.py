"""Deployment of finished generators: ONNX export, AOTInductor packages, standalone source.

Modules: `onnx_export` (`export_onnx` -> one self-contained, checked .onnx file with metadata),
`aoti` (`--aoti FILE.pt2`), `source` (`--source DIR`: the generated PyTorch package +
safetensors + generate.py), `cli` (`progan-export`). The metadata every export carries is
`progan_dsl.generate.meta.GeneratorMeta`. Which generator ships is
`progan_dsl.generate.stable_generator`; running exported files is `progan_dsl.generate`
(onnxruntime and AOTInductor samplers).
"""

from progan_dsl.lazy import lazy_exports

_EXPORTS = {
    "export_onnx": "progan_dsl.export.onnx_export",
    "parameter_elements": "progan_dsl.export.onnx_export",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
