"""onnxruntime for exported generators (.onnx files of progan-export): execution providers,
sessions, GPU IO binding.

Owns which execution providers a session gets and what is said when one is missing, the check of
a generator file's graph signature against its metadata (`check_signature`), and
`OnnxGenerator`, which runs an exported generator file. Imports onnxruntime and numpy only.

Provider order: TensorRT > CUDA > CPU, among `onnxruntime.get_available_providers()`.
- `device="cpu"` uses the CPU provider alone.
- `device="cuda[:i]"` with `provider="auto"` takes TensorRT and CUDA where onnxruntime offers them,
  CPU last (onnxruntime runs there what a GPU provider cannot). `provider="tensorrt"` or `"cuda"`
  demands that provider and fails clearly without it.
- TensorRT ships with no onnxruntime wheel: the TensorRT execution provider of onnxruntime-gpu
  loads NVIDIA's TensorRT libraries, which are installed separately from NVIDIA in the version
  the onnxruntime-gpu build expects. Built engines are cached (`trt_engine_cache_path`), since
  building one for a large generator takes minutes.
- A provider can be listed yet fail to load its libraries (onnxruntime then silently falls back
  to the next one), so the providers a session really got are checked after it is created.

On a GPU, `OnnxGenerator.run_on_device` binds the output to device memory (IO binding): the
images stay on the GPU as an `OrtValue` until the caller copies them (`.numpy()`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from progan_dsl.devices import parse_device
from progan_dsl.errors import UserError
from progan_dsl.generate.meta import (
    MAX_CHANNELS,
    MAX_FIXED_BATCH,
    MAX_LATENT_SIZE,
    MAX_SIDE,
    OUTPUT_NAME,
    GeneratorMeta,
    check_int,
    is_generator_meta,
)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_ORDER = (TENSORRT, CUDA, CPU)
PROVIDER_CHOICES = {"auto": None, "tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}

TENSORRT_MISSING = (
    "the TensorRT execution provider is not available to onnxruntime here. TensorRT does not come "
    "from PyPI with onnxruntime (no onnxruntime wheel bundles it): install onnxruntime-gpu, then "
    "NVIDIA's TensorRT libraries from NVIDIA in the version that onnxruntime-gpu build expects; "
    "or use --provider cuda"
)
CUDA_MISSING = (
    "onnxruntime has no working CUDA execution provider here; install onnxruntime-gpu in place "
    "of onnxruntime (with CUDA and cuDNN libraries it was built for), or use --device cpu"
)
LOG_ERRORS_ONLY = 3  # onnxruntime severity: 0 verbose .. 3 error; hides per-node fallback notes


def choose_providers(
    device: str = "cpu", provider: str = "auto", available: Sequence[str] | None = None
) -> list[str]:
    """Execution providers for a session, best first (see the module docstring)."""
    if provider not in PROVIDER_CHOICES:
        raise UserError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {provider!r}")
    kind, _ = parse_device(device)
    have = list(ort.get_available_providers() if available is None else available)
    wanted = PROVIDER_CHOICES[provider]
    if kind == "cpu":
        if wanted not in (None, CPU):
            raise UserError(f"--provider {provider} runs on a GPU; use --device cuda")
        return [CPU]
    if wanted == CPU:
        raise UserError("--provider cpu with --device cuda: use --device cpu")
    if wanted == TENSORRT and TENSORRT not in have:
        raise UserError(TENSORRT_MISSING)
    if wanted is not None and wanted not in have:
        raise UserError(CUDA_MISSING)
    gpu = [p for p in (TENSORRT, CUDA) if p in have and (wanted is None or p == wanted)]
    if not gpu:
        raise UserError(f"--device {device}: {CUDA_MISSING} (available: {', '.join(have)})")
    return [*gpu, CPU]


def provider_note(session_providers: Sequence[str]) -> str | None:
    """A one-line note when a GPU session ended up without TensorRT, else None."""
    if session_providers and session_providers[0] != CPU and TENSORRT not in session_providers:
        return f"note: running on {session_providers[0]} without TensorRT: {TENSORRT_MISSING}"
    return None


def _provider_options(name: str, device_id: int) -> dict[str, str]:
    if name == TENSORRT:
        cache = (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "progan-dsl" / "trt"
        )
        return {
            "device_id": str(device_id),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
        }
    if name == CUDA:
        return {"device_id": str(device_id)}
    return {}


def create_session(
    model: str | Path | bytes,
    *,
    device: str = "cpu",
    provider: str = "auto",
    threads: int | None = None,
) -> ort.InferenceSession:
    """An inference session on the best providers for `device`, checked after creation."""
    providers = choose_providers(device, provider)
    _, device_id = parse_device(device)
    options = ort.SessionOptions()
    options.log_severity_level = LOG_ERRORS_ONLY
    if threads:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise UserError(f"{model}: no such ONNX file")
    try:
        session = ort.InferenceSession(
            source,
            sess_options=options,
            providers=[(p, _provider_options(p, device_id)) for p in providers],
        )
    except Exception as err:  # noqa: BLE001 - onnxruntime raises several types for a bad file
        first = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise UserError(
            f"{model if not isinstance(model, bytes) else '<model>'}: onnxruntime "
            f"cannot load it ({first})"
        ) from None
    got = session.get_providers()
    if provider == "tensorrt" and TENSORRT not in got:
        raise UserError(
            f"{TENSORRT_MISSING} (the provider is built in but its libraries did not load)"
        )
    if providers[0] != CPU and got[0] == CPU:
        raise UserError(f"{CUDA_MISSING} (GPU providers listed but none loaded)")
    return session


@dataclass(frozen=True)
class Signature:
    """What a generator file takes and gives, checked (`check_signature`)."""

    input_name: str
    input_dtype: type  # np.float32 or np.float16
    output_name: str
    latent_size: int
    fixed_batch: int | None  # None: any batch size
    image_shape: tuple[int, int, int]  # [C, H, W]
    labels_name: str | None = None  # a conditional generator's second input
    num_classes: int = 0  # 0: unconditional


_FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _dims(arg: ort.NodeArg) -> list[int | None]:
    """A tensor's dims: ints where static, None where symbolic or unknown."""
    shape = arg.shape if isinstance(arg.shape, list) else []
    return [d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None for d in shape]


def check_signature(
    inputs: Sequence[ort.NodeArg],
    outputs: Sequence[ort.NodeArg],
    meta: GeneratorMeta | None,
    source: str,
) -> Signature:
    """Check a generator file's graph before it runs: input `z` float [N, latent] (and, for a
    conditional generator, `labels` float32 [N, num_classes]), output `images` float
    [N, C, H, W], static dims agreeing with the metadata (when the file has progan-export
    metadata) or, for a file without it, static and within the metadata bounds (such a file
    takes `z` alone). Raises a `UserError` naming the file and what was expected."""

    def fail(what: str, expected: str) -> UserError:
        return UserError(f"{source}: {what}; expected {expected} (not a generator file?)")

    def described(arg: ort.NodeArg) -> str:
        return f"'{arg.name}' {arg.type} {[d if d is not None else 'N' for d in _dims(arg)]}"

    want_inputs = list(meta.inputs) if meta is not None else None
    names = [arg.name for arg in inputs]
    if (want_inputs is not None and names != want_inputs) or (
        want_inputs is None and len(names) != 1
    ):
        expected = ", ".join(want_inputs) if want_inputs else "one input z"
        raise fail(f"its inputs are {', '.join(names) or 'none'}", f"the inputs {expected}")
    z = inputs[0]
    dims = _dims(z)
    if z.type not in _FLOATS or len(z.shape) != 2:
        raise fail(f"input {described(z)}", f"float32 [N, {meta.latent_size if meta else 'L'}]")
    batch, latent = dims
    if latent is None:
        raise fail(f"input {described(z)} has no fixed latent size", "a static latent size")
    if meta is not None and latent != meta.latent_size:
        raise fail(f"input {described(z)}", f"[N, {meta.latent_size}] (metadata latent_size)")
    check_int(latent, 1, MAX_LATENT_SIZE, "the latent size", source)
    if batch is not None:
        check_int(batch, 1, MAX_FIXED_BATCH, "the fixed batch", source)
    if meta is not None and batch != meta.batch:
        want = "a dynamic batch" if meta.batch is None else f"batch {meta.batch}"
        raise fail(f"input {described(z)}", f"{want} (metadata batch)")
    labels_name = None
    if meta is not None and meta.num_classes:
        labels = inputs[1]
        if labels.type != "tensor(float)" or _dims(labels) != [batch, meta.num_classes]:
            rows = batch or "N"
            raise fail(
                f"input {described(labels)}",
                f"float32 one-hot [{rows}, {meta.num_classes}] (metadata num_classes)",
            )
        labels_name = labels.name

    if len(outputs) != 1:
        raise fail(f"it has {len(outputs)} outputs", f"one output {OUTPUT_NAME}")
    out = outputs[0]
    if meta is not None and out.name != OUTPUT_NAME:
        raise fail(f"its output is named '{out.name}'", f"'{OUTPUT_NAME}'")
    out_dims = _dims(out)
    if out.type not in _FLOATS or len(out_dims) != 4:
        raise fail(f"output {described(out)}", "float32 images [N, C, H, W]")
    if out_dims[0] is not None and out_dims[0] != batch:
        raise fail(f"output {described(out)}", f"the input's batch {batch or 'N'} first")
    if meta is not None:
        axes = ("channels", "height", "width")
        for got, size, what in zip(out_dims[1:], meta.image_shape, axes, strict=True):
            if got is not None and got != size:
                raise fail(f"output {described(out)}", f"{meta.image_shape} ({what} {size})")
        image_shape = meta.image_shape
    else:
        if any(d is None for d in out_dims[1:]):
            raise fail(
                f"output {described(out)} has free image dims and the file no progan-export "
                "metadata",
                "static [N, C, H, W]",
            )
        c, h, w = (int(d) for d in out_dims[1:])  # type: ignore[arg-type]
        image_shape = (
            check_int(c, 1, MAX_CHANNELS, "the image channels", source),
            check_int(h, 1, MAX_SIDE, "the image height", source),
            check_int(w, 1, MAX_SIDE, "the image width", source),
        )
    return Signature(
        input_name=z.name,
        input_dtype=_FLOATS[z.type],
        output_name=out.name,
        latent_size=latent,
        fixed_batch=batch,
        image_shape=image_shape,
        labels_name=labels_name,
        num_classes=meta.num_classes if meta is not None else 0,
    )


class OnnxGenerator:
    """An exported generator in an onnxruntime session.

    Its metadata (`meta`, a `GeneratorMeta`; None for a file without progan-export metadata) and
    graph signature are checked before anything runs (`check_signature`), and every output is
    checked against that signature. `run(z)` returns host images; on a GPU it goes through
    `run_on_device`, whose IO binding writes the images to device memory and copies them once.
    Input and output dtypes follow the file (float32 for every progan-export file, fp16 ones
    included)."""

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        device: str = "cpu",
        provider: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.source = "<model>" if isinstance(model, bytes) else str(model)
        self.session = create_session(model, device=device, provider=provider, threads=threads)
        self.device_type, self.device_id = parse_device(device)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta: GeneratorMeta | None = (
            GeneratorMeta.from_props(self.metadata, source=self.source)
            if is_generator_meta(self.metadata)
            else None
        )
        self.signature = check_signature(
            self.session.get_inputs(), self.session.get_outputs(), self.meta, self.source
        )
        self.input_name, self.output_name = self.signature.input_name, self.signature.output_name
        self.input_dtype = self.signature.input_dtype
        self.fixed_batch = self.signature.fixed_batch
        self.latent_size = self.signature.latent_size
        self.image_shape = self.signature.image_shape  # [C, H, W]
        self.num_classes = self.signature.num_classes

    def feed(self, z: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
        """The session's inputs by name: z in the file's input dtype, labels (a conditional
        file only; `Sampler` checks them) float32."""
        feed: dict[str, np.ndarray] = {
            self.input_name: np.ascontiguousarray(z, dtype=self.input_dtype)
        }
        if self.signature.labels_name is not None:
            if labels is None:
                raise UserError(f"{self.source}: a conditional generator needs labels")
            feed[self.signature.labels_name] = np.ascontiguousarray(labels, dtype=np.float32)
        elif labels is not None:
            raise UserError(f"{self.source}: an unconditional generator takes no labels")
        return feed

    def check_output(self, images: np.ndarray, n: int) -> np.ndarray:
        """`images` if they are [n, C, H, W] of the signature, else a `UserError`."""
        want = (n, *self.image_shape)
        if tuple(images.shape) != want:
            raise UserError(
                f"{self.source}: the generator returned {list(images.shape)} for {n} latents; "
                f"expected {list(want)} (its graph does not compute what it declares)"
            )
        return images

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] != CPU

    def run_on_device(self, z: np.ndarray, labels: np.ndarray | None = None) -> ort.OrtValue:
        """Images as an OrtValue in the session's device memory (IO binding)."""
        binding = self.session.io_binding()
        for name, value in self.feed(z, labels).items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(self.output_name, self.device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def run(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Images [N, C, H, W] as a float32 host array for latents z [N, latent_size] (and
        one-hot labels [N, num_classes] for a conditional file)."""
        feed = self.feed(z, labels)
        try:
            if self.on_gpu:
                images = np.asarray(self.run_on_device(z, labels).numpy(), dtype=np.float32)
            else:
                out = self.session.run([self.output_name], feed)[0]
                images = np.asarray(out, dtype=np.float32)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises several types for a bad graph
            first = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            raise UserError(f"{self.source}: onnxruntime failed to run it ({first})") from None
        return self.check_output(images, len(z))
