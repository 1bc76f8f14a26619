"""onnxruntime providers, IO binding, the Sampler interface, latents and seeds, uint8, grids and
image files.

A hand-built ONNX "generator" (images = reshape(z)) makes every value checkable exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from progan_dsl.devices import parse_device
from progan_dsl.errors import UserError
from progan_dsl.generate import media
from progan_dsl.generate.latents import interpolate, latents, latents_for_seeds, seed_list, slerp
from progan_dsl.generate.meta import GeneratorMeta
from progan_dsl.generate.ort import (
    CPU,
    CUDA,
    TENSORRT,
    OnnxGenerator,
    choose_providers,
    provider_note,
)
from progan_dsl.generate.sampler import OnnxSampler, open_sampler
from progan_dsl.images import image_grid, to_pil, to_uint8, write_png


def reshape_meta(batch: int | str = "batch", **fields: object) -> GeneratorMeta:
    """progan-export metadata describing `reshape_generator` (fields override)."""
    values: dict = dict(
        spec_name="reshape",
        spec_hash="ab" * 32,
        stage="2/stable",
        resolution=2,
        height=2,
        width=2,
        channels=3,
        latent_size=12,
        precision="fp32",
        batch=batch if isinstance(batch, int) else None,
        fused_scale=False,
    )
    values.update(fields)
    return GeneratorMeta(**values)


def reshape_generator(path: Path, batch: int | str = "batch", metadata: bool = True) -> Path:
    """z [N, 12] -> images [N, 3, 2, 2] = reshape(z): a generator whose output is known."""
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, 12])
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 2, 2])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 3, 2, 2])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["z", "shape"], ["images"])], "reshape", [z], [images], [shape]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    if metadata:
        for key, value in reshape_meta(batch).to_props().items():
            model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_provider_order_is_tensorrt_cuda_cpu() -> None:
    everything = [CPU, CUDA, TENSORRT, "AzureExecutionProvider"]
    assert choose_providers("cuda", available=everything) == [TENSORRT, CUDA, CPU]
    assert choose_providers("cuda:1", available=[CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("cuda", "cuda", available=everything) == [CUDA, CPU]
    assert choose_providers("cuda", "tensorrt", available=everything) == [TENSORRT, CPU]
    assert choose_providers("cpu", available=everything) == [CPU]
    assert choose_providers("cpu") == [CPU]  # the real onnxruntime here


def test_missing_providers_are_explained() -> None:
    with pytest.raises(UserError, match="not on\\s+PyPI.*NVIDIA|PyPI.*NVIDIA"):
        choose_providers("cuda", "tensorrt", available=[CUDA, CPU])
    with pytest.raises(UserError, match="onnxruntime-gpu"):
        choose_providers("cuda", available=[CPU])
    with pytest.raises(UserError, match="onnxruntime-gpu"):
        choose_providers("cuda", "cuda", available=[TENSORRT, CPU])
    with pytest.raises(UserError, match="--device cuda"):
        choose_providers("cpu", "tensorrt", available=[TENSORRT, CUDA, CPU])
    with pytest.raises(UserError, match="provider must be"):
        choose_providers("cuda", "rocm")
    for bad in ("tpu", "cuda:x", "cpu:0"):
        with pytest.raises(UserError, match="device must be"):
            parse_device(bad)
    assert parse_device("cuda:2") == ("cuda", 2)
    assert "TensorRT" in (provider_note([CUDA, CPU]) or "")
    assert provider_note([TENSORRT, CUDA, CPU]) is None and provider_note([CPU]) is None


def test_io_binding_path_gives_the_plain_run(tmp_path: Path) -> None:
    gen = OnnxGenerator(reshape_generator(tmp_path / "r.onnx"))
    z = latents(5, 12, seed=1)
    bound = gen.run_on_device(z)  # on the CPU here: the same binding code a GPU session uses
    assert bound.device_name().lower() == "cpu"
    np.testing.assert_array_equal(bound.numpy(), z.reshape(5, 3, 2, 2))
    np.testing.assert_array_equal(gen.run(z), z.reshape(5, 3, 2, 2))
    assert gen.providers == [CPU] and not gen.on_gpu


def test_sampler_chunks_and_pads_a_fixed_batch(tmp_path: Path) -> None:
    z = latents(7, 12, seed=2)
    dynamic = open_sampler(reshape_generator(tmp_path / "d.onnx"), device="cpu", batch_size=2)
    fixed = open_sampler(
        reshape_generator(tmp_path / "f.onnx", batch=3, metadata=False), device="cpu"
    )
    assert isinstance(fixed, OnnxSampler) and fixed.fixed_batch == 3 and dynamic.fixed_batch is None
    assert (fixed.resolution, fixed.channels, fixed.height, fixed.width) == (2, 3, 2, 2)
    for sampler in (dynamic, fixed):
        assert sampler.backend == "onnxruntime" and sampler.latent_size == 12
        np.testing.assert_array_equal(sampler.sample(z), z.reshape(7, 3, 2, 2))
    assert dynamic.sample(np.zeros((0, 12), np.float32)).shape == (0, 3, 2, 2)
    want = to_uint8(latents(5, 12, seed=9).reshape(5, 3, 2, 2))
    np.testing.assert_array_equal(dynamic.sample_uint8(5, seed=9), want)
    batches = list(dynamic.iter_uint8(5, seed=9))  # batch_size 2: 2 + 2 + 1
    assert [len(b) for b in batches] == [2, 2, 1] and batches[0].dtype == np.uint8
    np.testing.assert_array_equal(np.concatenate(batches), want)
    with pytest.raises(UserError, match=r"\[N, 12\]"):
        dynamic.sample(np.zeros((2, 5), np.float32))


def test_open_sampler_rejects_bad_combinations(tmp_path: Path) -> None:
    model = reshape_generator(tmp_path / "r.onnx")
    with pytest.raises(UserError, match="--resolution picks a stage of a checkpoint"):
        open_sampler(model, resolution=4)
    with pytest.raises(UserError, match="--batch must be at least 1"):
        open_sampler(model, batch_size=0)
    with pytest.raises(UserError, match="no such ONNX file"):
        open_sampler(tmp_path / "missing.onnx", device="cpu")
    (tmp_path / "junk.onnx").write_text("not a model")
    with pytest.raises(UserError, match="cannot load"):
        open_sampler(tmp_path / "junk.onnx", device="cpu")
    with pytest.raises(UserError, match="no such checkpoint file or run folder"):
        open_sampler(tmp_path / "missing_run")


def test_latents_follow_the_documented_recipe() -> None:
    z = latents(3, 8, seed=5)
    assert z.dtype == np.float32 and z.shape == (3, 8)
    np.testing.assert_array_equal(
        z, np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
    )
    np.testing.assert_array_equal(latents(3, 8, seed=5), z)
    assert not np.array_equal(latents(3, 8, seed=6), z)


def test_seeds_name_one_latent_each() -> None:
    assert seed_list("0-3,42, 7") == [0, 1, 2, 3, 42, 7]
    z = latents_for_seeds([5, 9], 8)
    np.testing.assert_array_equal(z[1], latents(1, 8, seed=9)[0])  # independent of the others
    for bad, message in (
        ("x", "not a seed"),
        ("3-1", "ascending"),
        ("-1", "not a seed"),
        ("0-99999999", "more than"),
    ):
        with pytest.raises(UserError, match=message):
            seed_list(bad)


def test_to_uint8_rounds_and_clips() -> None:
    x = np.array([-2.0, -1.0, -0.999, -0.5, 0.0, 0.5, 1.0, 1.7], np.float32)
    # (x + 1) * 127.5 = -127.5, 0, 0.1275, 63.75, 127.5, 191.25, 255, 344.25 -> rint, clip
    assert to_uint8(x).tolist() == [0, 0, 0, 64, 128, 191, 255, 255]
    import torch

    assert to_uint8(torch.from_numpy(x)).tolist() == [0, 0, 0, 64, 128, 191, 255, 255]
    assert to_uint8(torch.from_numpy(x)).dtype == torch.uint8


def test_slerp_and_interpolation_loop() -> None:
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.0, 2.0], np.float32)
    mid = slerp(a, b, 0.5)  # 45 degrees: sin(pi/4)/sin(pi/2) of each
    np.testing.assert_allclose(mid, [math.sqrt(0.5), 2 * math.sqrt(0.5)], rtol=1e-6)
    np.testing.assert_allclose(slerp(a, a * 3, 0.25), a * 1.5, rtol=1e-6)  # parallel: linear
    keys = latents(3, 4, seed=0)
    frames = interpolate(keys, 4)
    assert frames.shape == (12, 4)
    np.testing.assert_array_equal(frames[[0, 4, 8]], keys)  # every key is a frame, in order
    lin = interpolate(keys, 2, "linear")
    np.testing.assert_allclose(lin[5], (keys[2] + keys[0]) / 2, rtol=1e-6)  # the loop closes
    with pytest.raises(UserError, match="at least 2"):
        interpolate(keys[:1], 4)


def test_grid_layout_and_png_files(tmp_path: Path) -> None:
    images = np.stack([np.full((1, 2, 3), 10 * (i + 1), np.uint8) for i in range(5)])
    canvas = image_grid(images, gutter=1)  # ceil(sqrt(5)) = 3 columns, 2 rows, grey gutters
    assert canvas.shape == (5, 11, 1)
    g = 128
    assert canvas[:, :, 0].tolist() == [
        [10] * 3 + [g] + [20] * 3 + [g] + [30] * 3,
        [10] * 3 + [g] + [20] * 3 + [g] + [30] * 3,
        [g] * 11,
        [40] * 3 + [g] + [50] * 3 + [g] * 4,
        [40] * 3 + [g] + [50] * 3 + [g] * 4,
    ]
    assert image_grid(images, cols=5).shape == (2, 5 * 3 + 4 * 2, 1)  # default gutter 2
    assert image_grid(images, cols=2, rows=1, gutter=0).shape == (2, 6, 1)  # first 2 only
    assert image_grid(images[:1], cell=8, gutter=0).shape == (8, 12, 1)  # nearest up by 4
    path = write_png(tmp_path / "grid.png", canvas)
    with Image.open(path) as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.array(img), canvas[:, :, 0])
    paths = media.write_image_folder(images, tmp_path / "singles", [f"s{i}" for i in range(5)])
    assert [p.name for p in paths] == [f"s{i}.png" for i in range(5)]
    with Image.open(paths[3]) as img:
        assert np.array(img).tolist() == [[40, 40, 40], [40, 40, 40]]
    rgb = write_png(tmp_path / "rgb.png", np.zeros((2, 2, 3), np.uint8))
    with Image.open(rgb) as img:
        assert img.mode == "RGB"
    with pytest.raises(ValueError, match="5-channel"):
        to_pil(np.zeros((2, 2, 5), np.uint8))
    assert not list(tmp_path.glob(".*"))


def test_image_folder_refuses_a_non_empty_folder_and_replaces_only_its_own(tmp_path: Path) -> None:
    images = np.zeros((2, 1, 2, 2), np.uint8)
    out = tmp_path / "out"
    media.write_image_folder(images, out, ["a", "b"])
    with pytest.raises(UserError, match="pass --force"):
        media.write_image_folder(images, out, ["a", "b"])
    media.write_image_folder(images[:1], out, ["c"], force=True)  # replaces a.png, b.png
    assert sorted(p.name for p in out.iterdir()) == [".progan-output.json", "c.png"]
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="did not write"):
        media.write_image_folder(images[:1], out, ["d"], force=True)
    assert (out / "mine.txt").read_text() == "keep me"
