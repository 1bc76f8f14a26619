"""Latents: the one recipe every backend shares, and walks between them.

Latents for a seed are `np.random.default_rng(seed).standard_normal((n, latent_size))` cast to
float32, so torch, onnxruntime and any other program see the same z for a seed. `seed_list`
parses stylegan-style `--seeds 0-7,42`; with `latents_for_seeds` each image has its own seed
(image i of seed s is the same whatever else is drawn).
"""

from __future__ import annotations

import numpy as np

from progan_dsl.errors import UserError

MAX_SEEDS = 1_000_000  # more images than this in one call is a typo, not a request


def latents(n: int, latent_size: int, seed: int) -> np.ndarray:
    """The n latents of a seed: float32 [n, latent_size], standard normal."""
    return np.random.default_rng(seed).standard_normal((n, latent_size)).astype(np.float32)


def latents_for_seeds(seeds: list[int], latent_size: int) -> np.ndarray:
    """One latent per seed (the first row of `latents(1, latent_size, seed)`): [len, latent]."""
    if not seeds:
        return np.zeros((0, latent_size), np.float32)
    return np.concatenate([latents(1, latent_size, s) for s in seeds])


def seed_list(text: str) -> list[int]:
    """'0-7,42' -> [0, 1, ..., 7, 42] (ranges inclusive, order kept, non-negative)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise UserError(f"--seeds: {part!r} is not a seed or a range like 0-7") from None
        if low < 0 or high < low:
            raise UserError(f"--seeds: {part!r} must be non-negative and ascending")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise UserError(f"--seeds {text}: more than {MAX_SEEDS:,} seeds")
        seeds.extend(range(low, high + 1))
    return seeds


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between latent rows a and b (linear where they are parallel)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.sum(a64 * b64, -1, keepdims=True) / (
        np.linalg.norm(a64, axis=-1, keepdims=True) * np.linalg.norm(b64, axis=-1, keepdims=True)
    )
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    sin = np.sin(omega)
    safe = np.where(sin > 1e-6, sin, 1.0)
    wa = np.where(sin > 1e-6, np.sin((1.0 - t) * omega) / safe, 1.0 - t)
    wb = np.where(sin > 1e-6, np.sin(t * omega) / safe, t)
    return (wa * a64 + wb * b64).astype(np.float32)


def interpolate(keys: np.ndarray, steps: int, mode: str = "slerp") -> np.ndarray:
    """A closed loop through the key latents: `steps` frames from each key to the next (the last
    key leads back to the first). Returns float32 [len(keys) * steps, latent_size]."""
    if len(keys) < 2:
        raise UserError("an interpolation needs at least 2 key latents (--num 2 or more)")
    if steps < 1:
        raise UserError(f"--interpolate needs at least 1 step, got {steps}")
    if mode not in ("slerp", "linear"):
        raise UserError(f"interpolation must be slerp or linear, got {mode!r}")
    frames = []
    for i in range(len(keys)):
        a, b = keys[i], keys[(i + 1) % len(keys)]
        for j in range(steps):
            t = j / steps
            frames.append(slerp(a, b, t) if mode == "slerp" else ((1 - t) * a + t * b))
    return np.stack(frames).astype(np.float32)


__all__ = ["interpolate", "latents", "latents_for_seeds", "seed_list", "slerp"]
