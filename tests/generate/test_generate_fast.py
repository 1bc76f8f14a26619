"""The torch sampler's fast backends against eager: torch.compile, channels_last, CUDA graphs
(CUDA only, marked), AOTInductor packages built for CUDA (marked); refusals (exit-2 errors).
(The CPU AOTInductor package and its sampler are tests/export/test_export_aoti.py.)

Tolerances: on this CPU channels_last and compiled generation differ from eager by at most
3e-7 relative L2 (tiny spec, 3 batches); 1e-5 is ~30x that. CUDA graphs replay the very kernels
of an eager pass (same bound). Against CPU eager, a CUDA package computes its convolutions in
TF32 (cuDNN's default for float32: a 10-bit mantissa like fp16, whose export measured 0.8-3e-3)
or bf16 (7 bits, 8x coarser): bounds 5e-3 and 3e-2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from progan_dsl.errors import UserError
from progan_dsl.generate.latents import latents
from progan_dsl.generate.sampler import (
    TORCH_BACKENDS,
    CudaGraphRunner,
    TorchSampler,
    open_sampler,
    torch_runner,
)
from progan_dsl.generate.stable import stable_generator
from tests.conftest import write_tiny_run

REL_L2 = 1e-5
TF32_REL_L2 = 5e-3
BF16_REL_L2 = 3e-2
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "00001-tiny"
    write_tiny_run(folder, [(4, "stable"), (8, "fade"), (8, "stable")])
    return folder


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_compiled_and_channels_last_samplers_draw_the_eager_images(run: Path) -> None:
    torch.set_num_threads(1)
    z = latents(7, 16, seed=2)
    eager = TorchSampler(stable_generator(run), device="cpu", batch_size=3, channels_last=False)
    want = eager.sample(z)
    for sampler in (
        TorchSampler(stable_generator(run), device="cpu", batch_size=3, channels_last=True),
        TorchSampler(
            stable_generator(run),
            device="cpu",
            batch_size=3,
            torch_backend="compile",
            compile_backend="eager",
        ),
    ):
        got = sampler.sample(z)
        assert got.shape == (7, 1, 8, 8) and rel(got, want) < REL_L2
    assert "compile" in sampler.description and sampler.fixed_batch is None


def test_backend_refusals(run: Path) -> None:
    with pytest.raises(UserError, match="the cudagraphs backend needs a CUDA device"):
        open_sampler(run, device="cpu", torch_backend="cudagraphs")
    with pytest.raises(UserError, match="torch backend must be one of eager, compile, cudagraphs"):
        torch_runner(torch.nn.Identity(), "tensorrt", torch.device("cpu"))
    assert TORCH_BACKENDS == ("eager", "compile", "cudagraphs")


@pytest.mark.cuda
@cuda
def test_cuda_graph_sampler_replays_the_eager_images(run: Path) -> None:
    z = latents(7, 16, seed=4)
    want = TorchSampler(stable_generator(run), device="cuda", batch_size=4).sample(z)
    graphs = TorchSampler(
        stable_generator(run), device="cuda", batch_size=4, torch_backend="cudagraphs"
    )
    got = graphs.sample(z)  # 7 latents: a full batch, then 3 padded to the captured 4
    assert graphs.fixed_batch == 4 and rel(got, want) < REL_L2
    runner = graphs.run
    assert isinstance(runner, CudaGraphRunner) and len(runner.graphs) == 1


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_aoti_package_matches_eager(run: Path, tmp_path: Path, precision: str) -> None:
    from progan_dsl.export.aoti import export_aoti

    chosen = stable_generator(run)
    path = export_aoti(
        chosen.program,
        chosen.stage,
        chosen.G,
        tmp_path / "g.pt2",
        precision=precision,
        device="cuda",
    )
    sampler = open_sampler(path, batch_size=5)
    assert sampler.backend == "aoti" and sampler.metadata["AOTI_DEVICE_KEY"] == "cuda"
    z = latents(5, 16, seed=6)
    want = TorchSampler(stable_generator(run), device="cpu").sample(z)
    assert rel(sampler.sample(z), want) < (TF32_REL_L2 if precision == "fp32" else BF16_REL_L2)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.generate.conditional import write_conditional_run

    folder = tmp_path_factory.mktemp("cond") / "00002-tiny_conditional"
    write_conditional_run(folder)
    return folder


def conditional_samplers(run: Path, device: str, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """Images of the conditional run by eager and by `backend`: 7 latents, mixed classes."""
    from progan_dsl.generate.sampler import class_labels

    z = latents(7, 16, seed=8)
    labels = class_labels([0, 1, 2, 3, 9, 9, 5], 7, 10)
    eager = TorchSampler(stable_generator(run), device=device, batch_size=4)
    fast = TorchSampler(
        stable_generator(run),
        device=device,
        batch_size=4,
        torch_backend=backend,
        compile_backend="eager" if device == "cpu" else "inductor",
    )
    return eager.sample(z, labels), fast.sample(z, labels)


def test_compiled_sampler_takes_labels(conditional_run: Path) -> None:
    torch.set_num_threads(1)
    want, got = conditional_samplers(conditional_run, "cpu", "compile")
    assert got.shape == (7, 3, 16, 16) and rel(got, want) < REL_L2


@pytest.mark.cuda
@cuda
def test_cuda_graph_sampler_replays_conditional_images(conditional_run: Path) -> None:
    want, got = conditional_samplers(conditional_run, "cuda", "cudagraphs")  # labels padded too
    assert got.shape == (7, 3, 16, 16) and rel(got, want) < REL_L2
