"""Samplers: one small interface over every way of running a finished generator.

Owns `open_sampler`, which opens a generator source behind the same `Sampler` interface. A
source is named one way everywhere: a run folder (its newest stable EMA generator), a checkpoint
file, an exported `.onnx` file or an AOTInductor `.pt2` package:

    sampler = open_sampler("g.onnx")                                  # onnxruntime
    sampler = open_sampler("runs/00003-celebahq", device="cuda")     # torch
    sampler = open_sampler("runs/00003-celebahq", torch_backend="cudagraphs")  # replayed graphs
    sampler = open_sampler("g.pt2")                                   # AOTInductor package
    sampler.latent_size, sampler.resolution, sampler.channels, sampler.height, sampler.width
    images = sampler.sample(z)              # float32 [N, C, H, W], nominal range [-1, 1]
    fakes = sampler.sample_uint8(1000, seed=0)              # uint8 [N, C, H, W]
    for batch in sampler.iter_uint8(10_000, seed=0): ...    # the same images, batch by batch

`sample` returns the generator's raw output (nominally [-1, 1] like the training data, not
clipped); the uint8 forms go through `progan_dsl.images.to_uint8`.

Torch backends (`torch_backend`, `TORCH_BACKENDS`): `eager` (the module as it is), `compile`
(`torch.compile`: 1.2-1.35x on a CPU once compiled; the first batch pays the compile, ~10 s),
`cudagraphs` (CUDA only: the forward captured once as a CUDA graph and replayed, which removes
the launch gaps; every pass then has the batch of the first, so a short last batch is padded).
Modules and inputs are channels_last where that wins (`CHANNELS_LAST`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from progan_dsl.errors import UserError
from progan_dsl.generate.aoti_package import check_archive, load_aoti, packaged_metadata
from progan_dsl.generate.latents import latents
from progan_dsl.generate.meta import GeneratorMeta

if TYPE_CHECKING:  # imported when used: `--help` and onnx-only use need no torch
    from progan_dsl.generate.stable import StableGenerator

DEFAULT_BATCH = 16  # latents per forward pass: a 1024x1024 G then needs ~1-2 GB of activations
ONNX_SUFFIX = ".onnx"
AOTI_SUFFIX = ".pt2"
TORCH_BACKENDS = ("eager", "compile", "cudagraphs")
# Generation in channels_last per device type: CPU measured 1.17x eager, 1.05x compiled (paper G
# at 128x128, batch 4, one thread: docs/benchmarks.md); CUDA: cuDNN's tensor-core layout.
CHANNELS_LAST = {"cuda": True, "cpu": True}


class Sampler(ABC):
    """A finished generator: latents in, images out, in batches of `batch_size`."""

    backend: str
    latent_size: int
    resolution: int  # longer side of the images
    channels: int
    height: int
    width: int
    batch_size: int
    fixed_batch: int | None  # an ONNX file exported with a fixed batch takes exactly this many
    description: str  # where the generator came from, for printed summaries

    @abstractmethod
    def _forward(self, z: np.ndarray) -> np.ndarray:
        """One batch: float32 [n, latent] -> float32 [n, C, H, W] on the host."""

    def iter_sample(self, z: np.ndarray) -> Iterator[np.ndarray]:
        """Images float32 [b, C, H, W] for z [N, latent], one forward pass (b <= batch) at a
        time."""
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
        from progan_dsl.images import to_uint8  # torch: imported when images are made

        for batch in self.iter_sample(latents(n, self.latent_size, seed)):
            yield to_uint8(batch)

    def sample_uint8(self, n: int, seed: int) -> np.ndarray:
        """The n images of a seed as uint8 [n, C, H, W] (the concatenated `iter_uint8`)."""
        parts = list(self.iter_uint8(n, seed))
        if not parts:
            return np.zeros((0, self.channels, self.height, self.width), np.uint8)
        return np.concatenate(parts)


class CudaGraphRunner:
    """A module's forward captured as one CUDA graph per input shape and replayed. The tensor
    returned is the graph's static output: valid until the next call (copy it out first)."""

    def __init__(self, module: Any, warmup: int = 3) -> None:
        self.module, self.warmup = module, warmup
        self.graphs: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}

    def _capture(self, z: Any) -> tuple[Any, Any, Any]:
        import torch

        static_in = z.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(self.warmup):  # cuDNN picks its algorithms outside the capture
                self.module(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = self.module(static_in)
        return graph, static_in, static_out

    def __call__(self, z: Any) -> Any:
        key = (tuple(z.shape), z.dtype, z.device)
        if key not in self.graphs:
            self.graphs[key] = self._capture(z)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(z)
        graph.replay()
        return static_out


def torch_runner(G: Any, backend: str, device: Any, compile_backend: str = "inductor") -> Any:
    """What runs `G` for a torch backend (`TORCH_BACKENDS`); `compile_backend` is
    torch.compile's (tests use "eager": no C++ compiler)."""
    import torch

    if backend not in TORCH_BACKENDS:
        raise UserError(
            f"torch backend must be one of {', '.join(TORCH_BACKENDS)}, got {backend!r}"
        )
    if backend == "compile":
        return torch.compile(G, backend=compile_backend)
    if backend == "cudagraphs":
        if device.type != "cuda":
            raise UserError("the cudagraphs backend needs a CUDA device (--device cuda)")
        return CudaGraphRunner(G)
    return G


class TorchSampler(Sampler):
    """The generated PyTorch module of a stable stage (eval mode, no gradients), run eagerly,
    compiled or replayed as CUDA graphs (`backend`)."""

    backend = "torch"

    def __init__(
        self,
        generator: StableGenerator,
        *,
        device: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        torch_backend: str = "eager",
        channels_last: bool | None = None,
        compile_backend: str = "inductor",
    ) -> None:
        import torch

        from progan_dsl.devices import torch_device

        self.device = torch_device(device)
        nhwc = (
            CHANNELS_LAST.get(self.device.type, False) if channels_last is None else channels_last
        )
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        moved = generator.G.to(self.device, memory_format=fmt)  # type: ignore[call-overload]
        self.G = moved.eval().requires_grad_(False)
        self.run = torch_runner(self.G, torch_backend, self.device, compile_backend)
        self.torch_backend = torch_backend
        arch = generator.program.spec.architecture
        self.latent_size = arch.latent_size
        self.resolution = generator.stage.resolution
        self.channels = arch.image_channels
        self.height, self.width = arch.spatial(generator.stage.resolution)
        self.batch_size = batch_size
        self.fixed_batch = batch_size if torch_backend == "cudagraphs" else None
        self.generator = generator
        self.description = (
            f"{generator.weights} of {generator.path} (stage {generator.stage}, "
            f"{generator.images_trained:,} images trained, {torch_backend})"
        )

    def _forward(self, z: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            images = self.run(torch.from_numpy(z).to(self.device))
        return images.float().cpu().numpy()


class AotiSampler(Sampler):
    """An AOTInductor `.pt2` package (`progan-export --aoti`), on the device it was built for.

    A package is compiled code that runs when it is loaded: open only trusted ones."""

    backend = "aoti"

    def __init__(self, path: str | Path, *, batch_size: int = DEFAULT_BATCH) -> None:
        import torch

        path = Path(path)
        if path.is_file():  # the metadata is checked before any of the package's code loads
            check_archive(path)
            packaged = packaged_metadata(path)
            if packaged is not None:
                GeneratorMeta.from_props(packaged, source=path)
        self.G, self.metadata = load_aoti(path)
        self.meta = GeneratorMeta.from_props(self.metadata, source=path)
        self.device = torch.device(self.meta.device or "cpu")
        self.latent_size, self.channels = self.meta.latent_size, self.meta.channels
        self.height, self.width = self.meta.height, self.meta.width
        self.resolution = self.meta.resolution
        self.batch_size, self.fixed_batch = batch_size, self.meta.batch
        self.description = f"{path} (AOTInductor, {self.device.type}, {self.meta.precision})"

    def _forward(self, z: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            images = self.G(torch.from_numpy(z).to(self.device))
        out = images.float().cpu().numpy()
        want = (len(z), *self.meta.image_shape)
        if tuple(out.shape) != want:
            raise UserError(
                f"{self.description}: the package returned {list(out.shape)} for {len(z)} "
                f"latents; expected {list(want)}"
            )
        return out


class OnnxSampler(Sampler):
    """An exported .onnx generator in onnxruntime (TensorRT > CUDA > CPU on a GPU)."""

    backend = "onnxruntime"

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        device: str | None = None,
        provider: str = "auto",
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        from progan_dsl.generate.ort import OnnxGenerator

        self.generator = OnnxGenerator(model, device=device or _default_device(), provider=provider)
        self.meta = self.generator.meta  # None: a generator file without progan-export metadata
        self.latent_size = self.generator.latent_size
        self.channels, self.height, self.width = self.generator.image_shape
        self.resolution = max(self.height, self.width)
        self.batch_size, self.fixed_batch = batch_size, self.generator.fixed_batch
        self.metadata = self.generator.metadata
        where = model if not isinstance(model, bytes) else "<in memory>"
        self.description = f"{where} ({' > '.join(self.generator.providers)})"

    def _forward(self, z: np.ndarray) -> np.ndarray:
        return self.generator.run(z)


def _default_device() -> str:
    from progan_dsl.devices import device_text, torch_device

    return device_text(torch_device(None))


def is_onnx(source: str | Path) -> bool:
    return Path(source).suffix.lower() == ONNX_SUFFIX


def is_aoti(source: str | Path) -> bool:
    return Path(source).suffix.lower() == AOTI_SUFFIX


def open_sampler(
    source: str | Path,
    *,
    device: str | None = None,
    provider: str = "auto",
    resolution: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    torch_backend: str = "eager",
) -> Sampler:
    """A sampler over a generator source: a `.onnx` file (onnxruntime), a `.pt2` AOTInductor
    package (on the device it was built for), or a checkpoint file or run folder (torch, the
    newest stable EMA generator; `resolution` picks another stable stage, see
    `stable_generator`; `torch_backend` one of `TORCH_BACKENDS`). `device` None: CUDA when
    available. `provider` (auto, tensorrt, cuda, cpu) applies to onnxruntime on a GPU."""
    if batch_size < 1:
        raise UserError(f"--batch must be at least 1, got {batch_size}")
    if is_onnx(source) or is_aoti(source):
        kind = "an .onnx file" if is_onnx(source) else "a .pt2 package"
        if resolution is not None:
            raise UserError(f"--resolution picks a stage of a checkpoint; {kind} has one")
        if is_aoti(source):
            return AotiSampler(source, batch_size=batch_size)
        return OnnxSampler(source, device=device, provider=provider, batch_size=batch_size)
    from progan_dsl.generate.stable import stable_generator

    return TorchSampler(
        stable_generator(source, resolution=resolution),
        device=device,
        batch_size=batch_size,
        torch_backend=torch_backend,
    )


__all__ = [
    "DEFAULT_BATCH",
    "TORCH_BACKENDS",
    "AotiSampler",
    "CudaGraphRunner",
    "OnnxSampler",
    "Sampler",
    "TorchSampler",
    "is_aoti",
    "is_onnx",
    "load_aoti",
    "open_sampler",
    "torch_runner",
]
