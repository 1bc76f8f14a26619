"""Deployment of finished generators: ONNX export, onnxruntime inference, image files.

Modules (data flows generator.py -> onnx_export.py / source.py -> runtime.py -> sampling.py):
- `generator`: which checkpoint and stable stage ship; rebuilds the module, loads EMA weights.
- `onnx_export`: `export_onnx` -> one self-contained, checked .onnx file with metadata.
- `source`: `--source DIR`, the generated PyTorch package + safetensors + generate.py.
- `runtime`: onnxruntime sessions (TensorRT > CUDA > CPU), IO binding on a GPU.
- `sampling`: `open_sampler` -> `Sampler` (one interface over torch and onnxruntime), latents.
- `media`: PNG grids, single PNGs, GIF / MP4 animations.
- `cli`: `progan-export` and `progan-generate`.
"""

from progan_dsl.export.generator import DeployGenerator, load_deploy_generator
from progan_dsl.export.onnx_export import export_onnx, parameter_elements
from progan_dsl.export.sampling import Sampler, latents, open_sampler, to_uint8

__all__ = [
    "DeployGenerator",
    "Sampler",
    "export_onnx",
    "latents",
    "load_deploy_generator",
    "open_sampler",
    "parameter_elements",
    "to_uint8",
]
