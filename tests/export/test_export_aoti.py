"""`progan-export --aoti FILE.pt2`: an AOTInductor package of the newest stable EMA generator of a
tiny run grown to 8x8 (fewer kernels to compile than at 16x16), compiled once for the CPU, run
by a Python process that cannot import progan_dsl, against the eager module; its metadata; user
errors (exit 2) and a failed compilation that leaves nothing behind."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from progan_dsl.cli import export_main
from progan_dsl.compiler import compile_spec
from progan_dsl.errors import UserError
from progan_dsl.export import aoti
from progan_dsl.generate import aoti_package
from progan_dsl.generate.latents import latents
from progan_dsl.generate.meta import GeneratorMeta
from tests.conftest import TINY, write_tiny_run

STAGES = [(4, "stable"), (8, "fade"), (8, "stable")]
# Inductor's C++ kernels sum in another order than eager's: measured max |diff| 0.4-6.0e-6
# (outputs up to 3 in size) and relative L2 2.4-6.0e-7 on this AVX-512 CPU (2 generators x 5
# latent seeds x batches 1, 3, 7). AVX2 kernels round differently again; 17-50x the measured
# spread still fails any real error (a wrong weight or layer is 1e-1).
REL_L2 = 3e-5
MAX_ABS = 1e-4

RUN_PACKAGE = """
import sys, json
sys.modules["progan_dsl"] = None  # the package must not need progan_dsl
import numpy as np, torch
G = torch._inductor.aoti_load_package(sys.argv[1])
out = {}
for n in (1, 5):
    z = torch.from_numpy(np.load(sys.argv[2])[:n])
    out[n] = G(z).numpy()
np.savez(sys.argv[3], one=out[1], five=out[5])
print(json.dumps(G.get_metadata()))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("run") / "00001-tiny"
    return folder, write_tiny_run(folder, STAGES)


@pytest.fixture(scope="module")
def package(run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("aoti") / "tiny.pt2"
    torch.set_num_threads(1)
    assert export_main(["--network", str(run[0]), "--aoti", str(out), "--quiet"]) == 0
    return out


def ema_generator(run: tuple[Path, dict]) -> torch.nn.Module:
    program = compile_spec(TINY)
    G = program.build("G", program.stage(8)).eval()
    state = run[1][(8, "stable")]
    G.load_state_dict({k: v for k, v in state.G_ema.items() if k in G.state_dict()})
    return G


def test_package_runs_without_progan_dsl_and_matches_the_eager_generator(
    run: tuple[Path, dict], package: Path, tmp_path: Path
) -> None:
    z = latents(5, 16, seed=3)
    np.save(tmp_path / "z.npy", z)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_PACKAGE,
            str(package),
            str(tmp_path / "z.npy"),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        want = ema_generator(run)(torch.from_numpy(z)).numpy()
    assert got["five"].shape == (5, 1, 8, 8) and got["one"].shape == (1, 1, 8, 8)  # dynamic
    for name, ref in (("five", want), ("one", want[:1])):
        rel = np.linalg.norm(got[name] - ref) / np.linalg.norm(ref)
        assert rel < REL_L2 and np.abs(got[name] - ref).max() < MAX_ABS, (name, rel)
    meta = json.loads(done.stdout.strip().splitlines()[-1])
    assert (meta["spec_name"], meta["stage"], meta["latent_size"]) == ("tiny", "8/stable", "16")
    assert (meta["images_trained"], meta["weights"]) == ("3000", "G_ema")
    assert (meta["checkpoint"], meta["batch"], meta["precision"]) == (
        "checkpoint-000003000.pt",
        "dynamic",
        "fp32",
    )
    assert meta["AOTI_DEVICE_KEY"] == "cpu" and meta["device"] == "cpu"
    assert meta["spec_yaml"] == TINY.read_text()


def test_metadata_reader_and_no_temporary_left(package: Path) -> None:
    before = {p.name for p in Path(tempfile.gettempdir()).glob("progan-aoti-*")}
    meta = aoti.read_aoti_metadata(package)
    assert meta["resolution"] == "8" and meta["exporter"].startswith("torch.export + AOTInductor")
    assert sorted(p.name for p in package.parent.iterdir()) == ["tiny.pt2"]
    typed = GeneratorMeta.from_props(meta, source=package)
    assert (typed.device, typed.num_classes, typed.inputs) == ("cpu", 0, ("z",))
    assert "AOTI_CPU_ISA" in typed.notes  # the compiler's own keys are notes
    # the same metadata is read from the archive without loading its code
    packaged = aoti_package.packaged_metadata(package)
    assert packaged is not None and GeneratorMeta.from_props(packaged, source=package) == typed
    gc.collect()  # the loaded model is gone: its private unpacking folder with it
    assert {p.name for p in Path(tempfile.gettempdir()).glob("progan-aoti-*")} <= before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--aoti", "{tmp}/g.onnx"], "must be named *.pt2"),
        (["--aoti", "{tmp}"], "is a folder"),
        (["--aoti", "{tmp}/g.pt2", "--aoti-device", "cuda"], "compiled on a CUDA GPU"),
        (["--out", "{tmp}/g.onnx", "--precision", "bf16"], "bf16 is for --aoti only"),
    ],
)
def test_user_errors_exit_2(
    run: tuple[Path, dict],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    extra: list[str],
    message: str,
) -> None:
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("a GPU is here")
    argv = ["--network", str(run[0]), *(a.replace("{tmp}", str(tmp_path)) for a in extra)]
    assert export_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_compilation_leaves_no_file(
    run: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ep: object, package_path: str, **kw: object) -> str:
        Path(package_path).write_bytes(b"half a package")
        raise RuntimeError("compiler died")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", broken)
    program = compile_spec(TINY)
    stage = program.stage(16)
    with pytest.raises(RuntimeError, match="compiler died"):
        aoti.export_aoti(program, stage, program.build("G", stage), tmp_path / "g.pt2")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="fade-in"):
        fade = program.stage(16, "fade")
        aoti.export_aoti(program, fade, program.build("G", fade), tmp_path / "g.pt2")


def test_open_sampler_runs_a_package(run: tuple[Path, dict], package: Path) -> None:
    from progan_dsl.generate.sampler import AotiSampler, open_sampler

    sampler = open_sampler(package, batch_size=3)
    assert isinstance(sampler, AotiSampler) and sampler.backend == "aoti"
    assert (sampler.latent_size, sampler.channels, sampler.height, sampler.resolution) == (
        16,
        1,
        8,
        8,
    )
    z = latents(7, 16, seed=9)  # batches of 3, 3 and 1 through the dynamic batch
    with torch.no_grad():
        want = ema_generator(run)(torch.from_numpy(z)).numpy()
    got = sampler.sample(z)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < REL_L2
    with pytest.raises(UserError, match="a .pt2 package has one"):
        open_sampler(package, resolution=4)
