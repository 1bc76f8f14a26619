"""Class-conditional generators exported: ONNX with inputs (z, labels) matching the torch
generator in onnxruntime, the metadata saying so, samplers feeding labels by name, and the
--source folder whose generate.py takes --class and draws progan-generate's images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from progan_dsl.cli import export_main, generate_main
from progan_dsl.errors import UserError
from progan_dsl.export.onnx_export import export_onnx, read_metadata
from progan_dsl.generate.latents import latents
from progan_dsl.generate.meta import GeneratorMeta
from progan_dsl.generate.sampler import class_labels, open_sampler
from tests.export.test_export_onnx import FP16_MAX_ABS, FP16_REL_L2, random_generator, rel_l2
from tests.generate.conditional import NUM_CLASSES, TINY_CONDITIONAL, write_conditional_run

# onnxruntime against eager torch, fp32, tests/specs/tiny_conditional.yaml at 16x16: measured
# relative L2 2.7e-7 .. 1.4e-6 and largest |diff| 1.7e-6 .. 2.9e-5 on outputs up to 2.4 (3 random
# generators x batches 1, 5, 10). The bounds are ~7x that; another class is off by ~1e-1.
FP32_REL_L2 = 1e-5
FP32_MAX_ABS = 2e-4
LATENT = 16


def torch_images(G: torch.nn.Module, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return G(torch.from_numpy(z), torch.from_numpy(labels)).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    program, stage, G = random_generator(TINY_CONDITIONAL, seed=1)
    out = tmp_path_factory.mktemp("conditional") / "c.onnx"
    export_onnx(program, stage, G, out)
    return program, stage, G, out


def test_onnx_takes_latents_and_labels_and_matches_torch(exported: tuple) -> None:
    _, _, G, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    assert inputs == [
        ("z", "tensor(float)", ["batch", LATENT]),
        ("labels", "tensor(float)", ["batch", NUM_CLASSES]),
    ]
    for n in (1, 5, 10):
        z = latents(n, LATENT, seed=n)
        labels = class_labels(np.arange(n) % NUM_CLASSES, n, NUM_CLASSES)
        got = session.run(["images"], {"z": z, "labels": labels})[0]
        want = torch_images(G, z, labels)
        assert got.shape == (n, 3, 16, 16)
        assert rel_l2(got, want) < FP32_REL_L2 and np.abs(got - want).max() < FP32_MAX_ABS
    # the labels are used: the same latents as another class are another image
    z = latents(4, LATENT, seed=0)
    three = session.run(["images"], {"z": z, "labels": class_labels(3, 4, NUM_CLASSES)})[0]
    seven = session.run(["images"], {"z": z, "labels": class_labels(7, 4, NUM_CLASSES)})[0]
    assert rel_l2(three, seven) > 100 * FP32_REL_L2


def test_metadata_names_the_inputs_and_classes(exported: tuple) -> None:
    import onnx

    _, _, _, path = exported
    props = read_metadata(onnx.load(str(path)))
    assert (props["num_classes"], props["inputs"]) == ("10", "z,labels")
    assert props["labels"] == "labels: float32 one-hot [N, 10], row i the class of image i"
    meta = GeneratorMeta.from_props(props, source=path)
    assert (meta.num_classes, meta.inputs, meta.spec_name) == (
        10,
        ("z", "labels"),
        "tiny_conditional",
    )


def test_onnx_sampler_feeds_labels_and_agrees_with_the_torch_sampler(
    exported: tuple, tmp_path: Path
) -> None:
    _, _, G, path = exported
    sampler = open_sampler(path, device="cpu", batch_size=3)
    assert (sampler.num_classes, sampler.latent_size) == (NUM_CLASSES, LATENT)
    classes = [0, 3, 3, 9, 5]
    z = latents(5, LATENT, seed=2)
    want = torch_images(G, z, class_labels(classes, 5, NUM_CLASSES))
    got = sampler.sample(z, labels=class_labels(classes, 5, NUM_CLASSES))  # in 2 passes
    assert rel_l2(got, want) < FP32_REL_L2
    assert sampler.sample_uint8(5, seed=2, classes=classes).shape == (5, 3, 16, 16)
    with pytest.raises(UserError, match=r"class-conditional generator \(10 classes\) needs"):
        sampler.sample(z)


def test_fixed_batch_fp16_export_pads_labels(tmp_path: Path) -> None:
    program, stage, G = random_generator(TINY_CONDITIONAL, seed=2)
    out = export_onnx(program, stage, G, tmp_path / "c16.onnx", precision="fp16", batch=4)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [[4, LATENT], [4, NUM_CLASSES]]
    sampler = open_sampler(out, device="cpu")
    classes = [1, 2, 3, 4, 5, 6]  # 6 images through a batch-4 file: the second pass is padded
    z = latents(6, LATENT, seed=5)
    labels = class_labels(classes, 6, NUM_CLASSES)
    got, want = sampler.sample(z, labels), torch_images(G, z, labels)
    assert rel_l2(got, want) < FP16_REL_L2 and np.abs(got - want).max() < FP16_MAX_ABS


def test_export_cli_source_script_takes_a_class(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "00000-tiny_conditional"
    write_conditional_run(run)
    out, src = tmp_path / "g.onnx", tmp_path / "src"
    assert export_main(["--network", str(run), "--out", str(out), "--source", str(src)]) == 0
    assert "z [N, 16], labels [N, 10] (one-hot) -> images [N, 3, 16, 16]" in capsys.readouterr().out
    script = (src / "generate.py").read_text()
    assert "G(z=torch.from_numpy(z), labels=labels)" in script  # bound by name
    drawn = {}
    for name, command in (
        ("source", [sys.executable, "-I", str(src / "generate.py"), "--class", "7"]),
        ("onnx", None),
        ("torch", None),
    ):
        target = tmp_path / f"{name}.png"
        common = ["--num", "4", "--seed", "3", "--out", str(target)]
        if command is not None:
            subprocess.run([*command, *common], cwd=tmp_path, check=True, timeout=120)
        else:
            network = out if name == "onnx" else run
            argv = ["--network", str(network), "--class", "7", "--upscale", "1", *common]
            assert generate_main([*argv, "--quiet"]) == 0
        with Image.open(target) as image:
            drawn[name] = np.asarray(image, np.int16)
    assert drawn["source"].shape == (34, 34, 3)  # 2 x 2 cells of 16 x 16, 2-pixel gutters
    assert np.abs(drawn["source"] - drawn["torch"]).max() <= 1
    assert np.abs(drawn["onnx"] - drawn["torch"]).max() <= 1
    wrong = subprocess.run(
        [sys.executable, "-I", str(src / "generate.py"), "--class", "10"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        wrong.returncode == 2 and "--class 10: the generator has 10 classes (0-9)" in wrong.stderr
    )


def test_aoti_package_takes_labels_by_its_metadata(tmp_path: Path) -> None:
    from progan_dsl.export.aoti import export_aoti
    from tests.export.test_export_aoti import MAX_ABS, REL_L2

    # the 4x4 stage: the labels' path at the fewest kernels to compile (C++ builds are slow)
    program, stage, G = random_generator(TINY_CONDITIONAL, 4, seed=3)
    torch.set_num_threads(1)
    path = export_aoti(program, stage, G, tmp_path / "c.pt2")
    sampler = open_sampler(path, batch_size=4)
    assert (sampler.num_classes, sampler.meta.inputs) == (NUM_CLASSES, ("z", "labels"))
    classes = [9, 0, 4, 4, 2]
    z = latents(5, LATENT, seed=6)
    labels = class_labels(classes, 5, NUM_CLASSES)
    got, want = sampler.sample(z, labels), torch_images(G, z, labels)
    assert rel_l2(got, want) < REL_L2 and np.abs(got - want).max() < MAX_ABS
    with pytest.raises(UserError, match=r"class-conditional generator \(10 classes\) needs"):
        sampler.sample(z)


def test_a_refused_source_folder_stops_the_export_before_any_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "00000-tiny_conditional"
    write_conditional_run(run)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    out = tmp_path / "g.onnx"
    assert export_main(["--network", str(run), "--out", str(out), "--source", str(foreign)]) == 2
    assert "is not empty and is not an earlier progan-export --source output" in (
        capsys.readouterr().err
    )
    assert not out.exists() and (foreign / "notes.txt").read_text() == "keep"
