"""Deployment of finished generators: ONNX export and standalone PyTorch source.

Modules: `onnx_export` (`export_onnx` -> one self-contained, checked .onnx file with metadata),
`source` (`--source DIR`: the generated PyTorch package + safetensors + generate.py), `cli`
(`progan-export`). Which generator ships is `progan_dsl.generate.stable_generator`; running
exported files is `progan_dsl.generate` (onnxruntime samplers).
"""

from progan_dsl.export.onnx_export import export_onnx, parameter_elements

__all__ = ["export_onnx", "parameter_elements"]
