"""Finished generators, from wherever they come: the one generator source.

Below metrics and export (neither imports the other; both import this).
Modules: `stable` (a stable-stage generator from a checkpoint or run folder), `latents` (the
latent recipe shared by every backend, seeds, walks), `ort` (onnxruntime sessions for exported
files), `sampler` (`open_sampler` -> `Sampler` over torch or onnxruntime), `media` (PNG folders,
GIF/MP4), `cli` (`progan-generate`).
"""

from progan_dsl.generate.latents import interpolate, latents, latents_for_seeds, seed_list
from progan_dsl.generate.sampler import Sampler, open_sampler
from progan_dsl.generate.stable import StableGenerator, stable_generator

__all__ = [
    "Sampler",
    "StableGenerator",
    "interpolate",
    "latents",
    "latents_for_seeds",
    "open_sampler",
    "seed_list",
    "stable_generator",
]
