"""Finished generators, from wherever they come: the one generator source.

Below metrics and export (neither imports the other; both import this).
Modules: `stable` (a stable-stage generator from a checkpoint or run folder), `latents` (the
latent recipe shared by every backend, seeds, walks), `meta` (`GeneratorMeta`, the metadata
contract of exported files), `ort` (onnxruntime sessions for exported files, their signature
check), `aoti_package` (loading .pt2 packages safely on disk), `sampler` (`open_sampler` ->
`Sampler` over torch, onnxruntime or AOTInductor; `class_labels` for class-conditional
generators), `media` (PNG folders, GIF/MP4), `cli`
(`progan-generate`).
"""

from progan_dsl.lazy import lazy_exports

_EXPORTS = {
    "Sampler": "progan_dsl.generate.sampler",
    "StableGenerator": "progan_dsl.generate.stable",
    "class_labels": "progan_dsl.generate.sampler",
    "interpolate": "progan_dsl.generate.latents",
    "latents": "progan_dsl.generate.latents",
    "latents_for_seeds": "progan_dsl.generate.latents",
    "open_sampler": "progan_dsl.generate.sampler",
    "seed_list": "progan_dsl.generate.latents",
    "stable_generator": "progan_dsl.generate.stable",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
