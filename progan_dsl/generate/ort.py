"""onnxruntime for exported generators (.onnx files of progan-export): execution providers,
sessions, GPU IO binding.

Owns which execution providers a session gets and what is said when one is missing, and
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
from pathlib import Path

import numpy as np
import onnxruntime as ort

from progan_dsl.devices import parse_device
from progan_dsl.errors import UserError

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


class OnnxGenerator:
    """An exported generator in an onnxruntime session.

    `run(z)` returns host images; on a GPU it goes through `run_on_device`, whose IO binding
    writes the images to device memory and copies them once. Input and output dtypes follow
    the file (float32 for every progan-export file, fp16 ones included)."""

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        device: str = "cpu",
        provider: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.session = create_session(model, device=device, provider=provider, threads=threads)
        self.device_type, self.device_id = parse_device(device)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 2:
            raise UserError(
                "not a generator file: expected one input z [N, latent] and one output of images"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        batch = inputs[0].shape[0]
        self.fixed_batch: int | None = batch if isinstance(batch, int) else None
        self.latent_size = int(inputs[0].shape[1])
        self.output_shape = list(outputs[0].shape)  # [N, C, H, W], N symbolic when dynamic
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] != CPU

    def run_on_device(self, z: np.ndarray) -> ort.OrtValue:
        """Images as an OrtValue in the session's device memory (IO binding)."""
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, np.ascontiguousarray(z, dtype=self.input_dtype))
        binding.bind_output(self.output_name, self.device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def run(self, z: np.ndarray) -> np.ndarray:
        """Images [N, C, H, W] as a float32 host array for latents z [N, latent_size]."""
        if self.on_gpu:
            return np.asarray(self.run_on_device(z).numpy(), dtype=np.float32)
        feed = {self.input_name: np.ascontiguousarray(z, dtype=self.input_dtype)}
        return np.asarray(self.session.run([self.output_name], feed)[0], dtype=np.float32)
