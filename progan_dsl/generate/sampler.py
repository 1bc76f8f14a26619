"""Samplers: one small interface over every way of running a deployed generator.

Owns the latent recipe every backend shares (`latents`), the float -> uint8 conversion
(`to_uint8`), latent interpolation (`interpolate`), and `open_sampler`, which opens an exported
.onnx file or a checkpoint / run folder behind the same `Sampler` interface:

    sampler = open_sampler(onnx="g.onnx")                   # onnxruntime, CPU
    sampler = open_sampler(checkpoint="runs/00003-celebahq", device="cuda")   # torch
    sampler.latent_size, sampler.resolution, sampler.channels, sampler.height, sampler.width
    images = sampler.sample(z)              # float32 [N, C, H, W], nominal range [-1, 1]
    fakes = sampler.sample_uint8(1000, seed=0)              # uint8 [N, C, H, W]
    for batch in sampler.iter_uint8(10_000, seed=0): ...    # the same images, batch by batch

Latents for a seed are `np.random.default_rng(seed).standard_normal((n, latent_size))` cast to
float32, so the torch and onnxruntime backends (and any other program) see the same z.
`sample` returns the generator's raw output: nominally [-1, 1] like the training data, not
clipped; `sample_uint8` rounds `(x + 1) * 127.5` to the nearest integer and clips to 0..255 (the
official `convert_to_pil_image`).
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from progan_dsl.errors import UserError

if TYPE_CHECKING:
    from progan_dsl.export.generator import DeployGenerator

BACKENDS = ("onnxruntime", "torch")
DEFAULT_BATCH = 16  # latents per forward pass: a 1024x1024 G then needs ~1-2 GB of activations


def latents(n: int, latent_size: int, seed: int) -> np.ndarray:
    """The n latents of a seed: float32 [n, latent_size], standard normal."""
    return np.random.default_rng(seed).standard_normal((n, latent_size)).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8: rint((x + 1) * 127.5), clipped to 0..255. Shape unchanged."""
    return np.clip(np.rint((images.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


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
        raise UserError("an interpolation needs at least 2 key latents (--n 2 or more)")
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


class Sampler(ABC):
    """A deployed generator: latents in, images out, in batches of `batch_size`."""

    backend: str
    latent_size: int
    resolution: int  # longer side of the images
    channels: int
    height: int
    width: int
    batch_size: int
    fixed_batch: int | None  # an ONNX file exported with a fixed batch takes exactly this many

    @abstractmethod
    def _forward(self, z: np.ndarray) -> np.ndarray:
        """One batch: float32 [n, latent] -> float32 [n, C, H, W] on the host."""

    def iter_sample(self, z: np.ndarray) -> Iterator[np.ndarray]:
        """Images float32 [b, C, H, W] for z [N, latent], one forward pass (b <= batch) at a time."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_size:
            raise UserError(f"latents must be [N, {self.latent_size}], got {list(z.shape)}")
        step = self.fixed_batch or self.batch_size
        for start in range(0, len(z), step):
            chunk = z[start : start + step]
            count = len(chunk)
            if self.fixed_batch and count < step:  # pad; zero latents are harmless (0 / sqrt(eps))
                chunk = np.concatenate(
                    [chunk, np.zeros((step - count, self.latent_size), np.float32)]
                )
            yield self._forward(chunk)[:count]

    def sample(self, z: np.ndarray) -> np.ndarray:
        """Images float32 [N, C, H, W] (nominal range [-1, 1], not clipped) for z [N, latent]."""
        parts = list(self.iter_sample(z))
        if not parts:
            return np.zeros((0, self.channels, self.height, self.width), np.float32)
        return np.concatenate(parts)

    def iter_uint8(self, n: int, seed: int) -> Iterator[np.ndarray]:
        """The n images of a seed as uint8 batches [b, C, H, W], for sets too large to hold at
        once (10k images at 1024x1024 are 126 GB as float32, 31 GB as uint8)."""
        for batch in self.iter_sample(latents(n, self.latent_size, seed)):
            yield to_uint8(batch)

    def sample_uint8(self, n: int, seed: int) -> np.ndarray:
        """The n images of a seed as uint8 [n, C, H, W] (the concatenated `iter_uint8`)."""
        parts = list(self.iter_uint8(n, seed))
        if not parts:
            return np.zeros((0, self.channels, self.height, self.width), np.uint8)
        return np.concatenate(parts)


class TorchSampler(Sampler):
    """The generated PyTorch module of a stable stage (eval mode, no gradients)."""

    backend = "torch"

    def __init__(
        self, deployed: DeployGenerator, *, device: str = "cpu", batch_size: int = DEFAULT_BATCH
    ) -> None:
        import torch

        from progan_dsl.export.runtime import parse_device

        if parse_device(device)[0] == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {device}: torch sees no CUDA device; use --device cpu")
        self.device = torch.device(device)
        self.G = deployed.G.to(self.device).eval().requires_grad_(False)
        arch = deployed.program.spec.architecture
        self.latent_size = arch.latent_size
        self.resolution = deployed.stage.resolution
        self.channels = arch.image_channels
        self.height, self.width = arch.spatial(deployed.stage.resolution)
        self.batch_size, self.fixed_batch = batch_size, None
        self.deployed = deployed

    def _forward(self, z: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            images = self.G(torch.from_numpy(z).to(self.device))
        return images.float().cpu().numpy()


class OnnxSampler(Sampler):
    """An exported .onnx generator in onnxruntime (TensorRT > CUDA > CPU on a GPU)."""

    backend = "onnxruntime"

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        device: str = "cpu",
        provider: str = "auto",
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        from progan_dsl.export.runtime import OnnxGenerator

        self.generator = OnnxGenerator(model, device=device, provider=provider)
        meta = self.generator.metadata
        _, channels, height, width = self.generator.output_shape
        self.latent_size = self.generator.latent_size
        self.channels = int(meta.get("channels", channels))
        self.height = int(meta.get("height", height))
        self.width = int(meta.get("width", width))
        self.resolution = int(meta.get("resolution", max(self.height, self.width)))
        self.batch_size, self.fixed_batch = batch_size, self.generator.fixed_batch
        self.metadata = meta

    def _forward(self, z: np.ndarray) -> np.ndarray:
        return self.generator.run(z)


def open_sampler(
    onnx: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    backend: str | None = None,
    *,
    provider: str = "auto",
    resolution: int | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> Sampler:
    """A sampler over an exported .onnx file or a checkpoint / run folder (exactly one).

    backend: None picks onnxruntime for `onnx` and torch for `checkpoint`. A checkpoint with
    `backend="onnxruntime"` is exported in memory first (`export_onnx`, fp32). `resolution`
    picks the stable stage of a checkpoint (default: its own, see `load_deploy_generator`);
    `provider` (auto, tensorrt, cuda, cpu) applies to onnxruntime on `device="cuda"`."""
    if (onnx is None) == (checkpoint is None):
        raise UserError("give exactly one generator source: an .onnx file or a checkpoint")
    if backend is None:
        backend = "onnxruntime" if onnx is not None else "torch"
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    if onnx is not None:
        if backend == "torch":
            raise UserError(
                "an .onnx file runs with --backend onnxruntime; use --checkpoint for torch"
            )
        if resolution is not None:
            raise UserError("--resolution picks a stage of a checkpoint; an .onnx file has one")
        return OnnxSampler(onnx, device=device, provider=provider, batch_size=batch_size)

    from progan_dsl.export.generator import load_deploy_generator

    assert checkpoint is not None
    deployed = load_deploy_generator(checkpoint, resolution=resolution)
    if backend == "torch":
        return TorchSampler(deployed, device=device, batch_size=batch_size)
    from progan_dsl.export.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="progan-export-") as tmp:
        path = export_onnx(
            deployed.program,
            deployed.stage,
            deployed.G,
            Path(tmp) / "G.onnx",
            metadata={"images_trained": deployed.images_trained},
        )
        model = path.read_bytes()
    return OnnxSampler(model, device=device, provider=provider, batch_size=batch_size)
