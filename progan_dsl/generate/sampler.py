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

Class-conditional generators (`sampler.num_classes` > 0; 0 for an unconditional one) take one-hot
labels beside the latents, float32 [N, num_classes], row i the class of image i:

    images = sampler.sample(z, labels=class_labels(3, len(z), sampler.num_classes))
    fakes = sampler.sample_uint8(100, seed=0, classes=3)            # 100 images of class 3
    fakes = sampler.sample_uint8(3, seed=0, classes=[0, 3, 7])      # one class per image

Labels are required for a conditional generator and refused for an unconditional one (a
`UserError` either way): no class is ever made up. The torch sampler binds z and labels to the
module's arguments by role through its signature (`Program.signature`); an exported file by
the input names its metadata lists.

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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from progan_dsl.errors import UserError
from progan_dsl.generate.aoti_package import check_archive, load_aoti, packaged_metadata
from progan_dsl.generate.latents import latents
from progan_dsl.generate.meta import LABELS_INPUT, LATENT_INPUT, GeneratorMeta

if TYPE_CHECKING:  # imported when used: `--help` and onnx-only use need no torch
    from progan_dsl.generate.stable import StableGenerator

DEFAULT_BATCH = 16  # latents per forward pass: a 1024x1024 G then needs ~1-2 GB of activations
ONNX_SUFFIX = ".onnx"
AOTI_SUFFIX = ".pt2"
TORCH_BACKENDS = ("eager", "compile", "cudagraphs")
# Generation in channels_last per device type: CPU measured 1.17x eager, 1.05x compiled (paper G
# at 128x128, batch 4, one thread: docs/benchmarks.md); CUDA: cuDNN's tensor-core layout.
CHANNELS_LAST = {"cuda": True, "cpu": True}


Classes = int | Sequence[int] | np.ndarray  # one class for every image, or one per image


def class_labels(classes: Classes, n: int, num_classes: int) -> np.ndarray:
    """One-hot labels float32 [n, num_classes] for `classes`: one class index for all n images
    or n indices, each in 0..num_classes-1 (else a `UserError`)."""
    if not num_classes:
        raise UserError("an unconditional generator takes no classes")
    index = np.asarray(classes)
    if index.ndim == 0:
        index = np.full(n, index)
    if index.ndim != 1 or len(index) != n or not np.issubdtype(index.dtype, np.integer):
        raise UserError(f"classes must be one class or {n} class indices, got {index.shape}")
    bad = index[(index < 0) | (index >= num_classes)]
    if len(bad):
        raise UserError(
            f"class {int(bad[0])} is out of range: the generator has {num_classes} classes "
            f"(0-{num_classes - 1})"
        )
    labels = np.zeros((n, num_classes), np.float32)
    labels[np.arange(n), index] = 1.0
    return labels


class Sampler(ABC):
    """A finished generator: latents (and labels, when conditional) in, images out, in batches
    of `batch_size`."""

    backend: str
    latent_size: int
    num_classes: int = 0  # 0: unconditional; else labels float32 one-hot [N, num_classes]
    resolution: int  # longer side of the images
    channels: int
    height: int
    width: int
    batch_size: int
    fixed_batch: int | None  # an ONNX file exported with a fixed batch takes exactly this many
    description: str  # where the generator came from, for printed summaries

    @abstractmethod
    def _forward(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """One batch: float32 [n, latent] (and labels float32 [n, num_classes] or None) ->
        float32 [n, C, H, W] on the host."""

    def check_labels(self, labels: np.ndarray | None, n: int) -> np.ndarray | None:
        """`labels` as float32 [n, num_classes] for a conditional generator, None for an
        unconditional one; a `UserError` for a missing, unwanted or misshapen array."""
        if not self.num_classes:
            if labels is not None:
                raise UserError(
                    f"{self.description}: an unconditional generator takes no labels (classes)"
                )
            return None
        if labels is None:
            raise UserError(
                f"{self.description}: a class-conditional generator ({self.num_classes} "
                "classes) needs labels: one class per image"
            )
        labels = np.asarray(labels, dtype=np.float32)
        if labels.shape != (n, self.num_classes):
            raise UserError(
                f"labels must be one-hot [{n}, {self.num_classes}], got {list(labels.shape)}"
            )
        return labels

    def iter_sample(self, z: np.ndarray, labels: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Images float32 [b, C, H, W] for z [N, latent] (and labels [N, num_classes] of a
        conditional generator), one forward pass (b <= batch) at a time."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_size:
            raise UserError(f"latents must be [N, {self.latent_size}], got {list(z.shape)}")
        labels = self.check_labels(labels, len(z))
        step = self.fixed_batch or self.batch_size
        for start in range(0, len(z), step):
            chunk = z[start : start + step]
            rows = None if labels is None else labels[start : start + step]
            count = len(chunk)
            if self.fixed_batch and count < step:  # pad; zero latents are harmless (0 / sqrt(eps))
                chunk = _pad(chunk, step)
                rows = None if rows is None else _pad(rows, step)
            yield self._forward(chunk, rows)[:count]

    def sample(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Images float32 [N, C, H, W] (nominal range [-1, 1], not clipped) for z [N, latent]
        (and one-hot labels [N, num_classes] of a conditional generator)."""
        parts = list(self.iter_sample(z, labels))
        if not parts:
            return np.zeros((0, self.channels, self.height, self.width), np.float32)
        return np.concatenate(parts)

    def labels_for(self, classes: Classes | None, n: int) -> np.ndarray | None:
        """One-hot labels of `classes` for n images (None stays None: `check_labels` then says
        what a conditional generator needs)."""
        return None if classes is None else class_labels(classes, n, self.num_classes)

    def iter_uint8(self, n: int, seed: int, classes: Classes | None = None) -> Iterator[np.ndarray]:
        """The n images of a seed as uint8 batches [b, C, H, W], for sets too large to hold at
        once (10k images at 1024x1024 are 126 GB as float32, 31 GB as uint8). `classes`: a
        conditional generator's class for every image, or one per image (`class_labels`)."""
        from progan_dsl.images import to_uint8  # torch: imported when images are made

        labels = self.labels_for(classes, n)
        for batch in self.iter_sample(latents(n, self.latent_size, seed), labels):
            yield to_uint8(batch)

    def sample_uint8(self, n: int, seed: int, classes: Classes | None = None) -> np.ndarray:
        """The n images of a seed as uint8 [n, C, H, W] (the concatenated `iter_uint8`)."""
        parts = list(self.iter_uint8(n, seed, classes))
        if not parts:
            return np.zeros((0, self.channels, self.height, self.width), np.uint8)
        return np.concatenate(parts)


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """`rows` padded with zero rows to `size` (a fixed-batch pass; the padding is dropped)."""
    return np.concatenate([rows, np.zeros((size - len(rows), *rows.shape[1:]), rows.dtype)])


class CudaGraphRunner:
    """A module's forward captured as one CUDA graph per input shape and replayed. The tensor
    returned is the graph's static output: valid until the next call (copy it out first)."""

    def __init__(self, module: Any, warmup: int = 3) -> None:
        self.module, self.warmup = module, warmup
        self.graphs: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}

    def _capture(self, args: tuple[Any, ...]) -> tuple[Any, Any, Any]:
        import torch

        static_in = tuple(a if a is None else a.clone() for a in args)  # None: alpha unused
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(self.warmup):  # cuDNN picks its algorithms outside the capture
                self.module(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = self.module(*static_in)
        return graph, static_in, static_out

    def __call__(self, *args: Any) -> Any:
        key = tuple(None if a is None else (tuple(a.shape), a.dtype, a.device) for a in args)
        if key not in self.graphs:
            self.graphs[key] = self._capture(args)
        graph, static_in, static_out = self.graphs[key]
        for static, arg in zip(static_in, args, strict=True):
            if static is not None:
                static.copy_(arg)
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
        self.signature = generator.program.signature("G", generator.stage)
        self.latent_size = arch.latent_size
        self.num_classes = generator.program.num_classes
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

    def _forward(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        import torch

        from progan_dsl.ir.types import PortRole

        values = {PortRole.LATENT: torch.from_numpy(z).to(self.device)}
        if labels is not None:
            values[PortRole.LABELS] = torch.from_numpy(labels).to(self.device)
        with torch.inference_mode():
            result = self.run(*self.signature.args(values))
            images = self.signature.results(result)[PortRole.IMAGE]
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
        self.num_classes = self.meta.num_classes
        self.height, self.width = self.meta.height, self.meta.width
        self.resolution = self.meta.resolution
        self.batch_size, self.fixed_batch = batch_size, self.meta.batch
        self.description = f"{path} (AOTInductor, {self.device.type}, {self.meta.precision})"

    def _forward(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        import torch

        given = {LATENT_INPUT: z}  # the package's inputs, by the names its metadata lists
        if labels is not None:
            given[LABELS_INPUT] = labels
        args = [torch.from_numpy(given[name]).to(self.device) for name in self.meta.inputs]
        with torch.inference_mode():
            images = self.G(*args)
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
        self.num_classes = self.generator.num_classes
        self.channels, self.height, self.width = self.generator.image_shape
        self.resolution = max(self.height, self.width)
        self.batch_size, self.fixed_batch = batch_size, self.generator.fixed_batch
        self.metadata = self.generator.metadata
        where = model if not isinstance(model, bytes) else "<in memory>"
        self.description = f"{where} ({' > '.join(self.generator.providers)})"

    def _forward(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        return self.generator.run(z, labels)


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
    "class_labels",
    "is_aoti",
    "is_onnx",
    "load_aoti",
    "open_sampler",
    "torch_runner",
]
