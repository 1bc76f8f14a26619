"""The export metadata contract (`GeneratorMeta`) and what a generator file must be before it
runs: hostile or damaged .onnx files (wrong dtypes, ranks, sizes, metadata) and .pt2 archives
(members climbing out of the unpacking folder, links, junk) end in exit 2 with what was expected,
never a traceback, a huge allocation or a file written outside the unpacking folder.

Every hostile file is built here from tiny graphs (onnx.helper) or zip archives."""

from __future__ import annotations

import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from progan_dsl.cli import generate_main, metrics_main
from progan_dsl.errors import UserError
from progan_dsl.generate import aoti_package
from progan_dsl.generate.latents import latents
from progan_dsl.generate.meta import MAX_LATENT_SIZE, MAX_SIDE, GeneratorMeta
from progan_dsl.generate.sampler import class_labels, open_sampler
from progan_dsl.images import to_uint8
from tests.generate.test_generate_runtime import reshape_meta

# The metadata keys and values of an export written before `num_classes` and `inputs` existed
# (progan-export of the tiny spec at 4x4; spec_yaml shortened).
EARLIER_EXPORT = {
    "producer": "progan-dsl 0.1.0",
    "exporter": "torch.onnx dynamo=True (torch 2.13.0), opset 18",
    "spec_name": "tiny",
    "spec_hash": "8bd46d4a91a849a5b54df26f0075de8bc88250a23b7e0f927a8e8b058f46",
    "stage": "4/stable",
    "resolution": "4",
    "height": "4",
    "width": "4",
    "channels": "1",
    "latent_size": "16",
    "latent_normalization": "z ~ N(0, I), float32 [N, 16]; ...",
    "output": "images: float32 [N, 1, 4, 4] (NCHW), nominal range [-1, 1]; ...",
    "output_range": "[-1, 1]",
    "precision": "fp32",
    "batch": "dynamic",
    "fused_scale": "true",
    "spec_yaml": "spec_version: 1\nname: tiny\n",
    "images_trained": "1000",
    "checkpoint": "checkpoint-000001000.pt",
    "weights": "G_ema",
}


def graph_file(
    path: Path,
    *,
    props: dict[str, str] | None,
    z_type: int = TensorProto.FLOAT,
    z_shape: list = ["batch", 12],  # noqa: B006 - read only
    out_shape: list = ["batch", 3, 2, 2],  # noqa: B006
    reshape_to: list[int] = [-1, 3, 2, 2],  # noqa: B006
    opaque: bool = False,
) -> Path:
    """z -> images = reshape(cast(z)): a tiny generator with any declared signature. `opaque`
    makes the reshape's target depend on the data (+ 0 * min(z)), so onnxruntime cannot infer
    the output shape and reports the declared one."""
    z = helper.make_tensor_value_info("z", z_type, z_shape)
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, out_shape)
    shape = helper.make_tensor("shape", TensorProto.INT64, [len(reshape_to)], reshape_to)
    nodes = [helper.make_node("Cast", ["z"], ["zf"], to=TensorProto.FLOAT)]
    target = "shape"
    if opaque:
        nodes += [
            helper.make_node("Mul", ["zf", "zero"], ["z0"]),
            helper.make_node("ReduceMin", ["z0"], ["m"], keepdims=0),
            helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
            helper.make_node("Add", ["shape", "mi"], ["opaque_shape"]),
        ]
        target = "opaque_shape"
    nodes.append(helper.make_node("Reshape", ["zf", target], ["images"]))
    constants = [shape, helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    graph = helper.make_graph(nodes, "g", [z], [images], constants if opaque else [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def props(**changes: str) -> dict[str, str]:
    out = reshape_meta().to_props()
    out.update(changes)
    return out


# ---- the metadata contract ------------------------------------------------------------------


def test_metadata_round_trip_and_conditional_inputs() -> None:
    meta = reshape_meta(batch=4, notes={"producer": "x"})
    assert GeneratorMeta.from_props(meta.to_props(), source="f.onnx") == meta
    assert meta.to_props()["inputs"] == "z" and meta.to_props()["num_classes"] == "0"
    labelled = reshape_meta(num_classes=10, inputs=("z", "labels"))
    back = GeneratorMeta.from_props(labelled.to_props(), source="f.onnx")
    assert back.num_classes == 10 and back.inputs == ("z", "labels")
    with pytest.raises(ValueError, match="inputs must be"):
        reshape_meta(num_classes=10)  # a conditional generator takes labels too
    with pytest.raises(ValueError, match="may not override"):
        reshape_meta(notes={"channels": "3"})


def test_an_earlier_export_still_loads() -> None:
    meta = GeneratorMeta.from_props(EARLIER_EXPORT, source="old.onnx")
    assert (meta.num_classes, meta.inputs, meta.batch, meta.fused_scale) == (0, ("z",), None, True)
    assert meta.image_shape == (1, 4, 4) and meta.latent_size == 16 and meta.device is None
    assert meta.notes["images_trained"] == "1000" and "spec_yaml" in meta.notes
    assert meta.to_props() == {**EARLIER_EXPORT, "num_classes": "0", "inputs": "z"}


def test_an_earlier_format_onnx_file_runs(tmp_path: Path) -> None:
    old = {k: v for k, v in props().items() if k not in ("num_classes", "inputs")}
    sampler = open_sampler(graph_file(tmp_path / "old.onnx", props=old), device="cpu")
    z = np.arange(24, dtype=np.float32).reshape(2, 12)
    np.testing.assert_array_equal(sampler.sample(z), z.reshape(2, 3, 2, 2))
    assert sampler.meta is not None and sampler.meta.spec_name == "reshape"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": "abc"}, "metadata 'channels' is 'abc'; expected an integer from 1 to 4"),
        ({"latent_size": str(2**28)}, f"expected an integer from 1 to {MAX_LATENT_SIZE:,}"),
        (
            {"resolution": "1000000", "height": "1000000", "width": "1000000"},
            f"'resolution' is '1000000'; expected an integer from 1 to {MAX_SIDE:,}",
        ),
        ({"resolution": "4"}, "expected the longer side of 2x2"),
        ({"stage": "4/fade"}, "metadata 'stage'"),
        ({"batch": "0"}, "metadata 'batch' is '0'"),
        ({"precision": "int4"}, "one of fp32, fp16, bf16"),
        ({"fused_scale": "yes"}, "one of true, false"),
        ({"num_classes": "-1"}, "metadata 'num_classes'"),
        ({"inputs": "z,labels"}, "expected z (num_classes 0)"),
        ({"device": "tpu"}, "metadata 'device'"),
    ],
)
def test_bad_metadata_is_refused_with_what_was_expected(changes: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        GeneratorMeta.from_props(props(**changes), source="gen.onnx")
    assert str(caught.value).startswith("gen.onnx: ") and message in str(caught.value)


def test_incomplete_metadata_names_what_is_missing() -> None:
    partial = {"resolution": "2", "height": "2", "width": "2", "channels": "3"}
    with pytest.raises(UserError, match="lacks spec_name, spec_hash, stage, latent_size"):
        GeneratorMeta.from_props(partial, source="x.onnx")


# ---- hostile .onnx files -----------------------------------------------------------------------


HOSTILE_ONNX = {
    "int64_latent": (
        dict(z_type=TensorProto.INT64),
        "input 'z' tensor(int64) ['N', 12]; expected float32 [N, 12]",
    ),
    "symbolic_latent": (dict(z_shape=["batch", "latent"]), "has no fixed latent size"),
    "latent_disagrees": (dict(z_shape=["batch", 6], reshape_to=[-1, 3, 2, 1]), "[N, 12]"),
    "rank2_output": (dict(out_shape=["batch", 12], reshape_to=[-1, 12]), "float32 images"),
    "shape_disagrees": (
        dict(out_shape=["batch", 1, 2, 2], opaque=True),
        "['N', 1, 2, 2]; expected (3, 2, 2) (channels 3)",
    ),
    "inferred_shape_disagrees": (dict(reshape_to=[-1, 3, 1, 2]), "(3, 2, 2) (height 2)"),
    "wrong_element_count": (
        dict(out_shape=["batch", 3, 2, 2], reshape_to=[-1, 3, 1, 2], opaque=True),
        "returned [4, 3, 1, 2] for 2 latents; expected [2, 3, 2, 2]",
    ),
    "fixed_batch_disagrees": (dict(z_shape=[3, 12], out_shape=[3, 3, 2, 2]), "a dynamic batch"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ONNX))
def test_hostile_onnx_generators_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shape, message = HOSTILE_ONNX[case]
    path = graph_file(tmp_path / f"{case}.onnx", props=props(), **shape)
    out = tmp_path / "grid.png"
    argv = ["--network", str(path), "--num", "2", "--device", "cpu", "--out", str(out)]
    assert generate_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": "abc"}, "metadata 'channels' is 'abc'"),
        ({"latent_size": str(2**28)}, "metadata 'latent_size' is '268435456'"),
        ({"height": "1000000"}, "metadata 'height' is '1000000'"),
    ],
)
def test_hostile_metadata_stops_generate_and_metrics(
    changes: dict, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = graph_file(tmp_path / "g.onnx", props=props(**changes))
    assert (
        generate_main(["--network", str(path), "--device", "cpu", "--out", str(tmp_path / "x.png")])
        == 2
    )
    assert message in capsys.readouterr().err
    assert metrics_main(["--network", str(path), "--metrics", "msssim", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_foreign_file_without_metadata_needs_a_static_bounded_signature(tmp_path: Path) -> None:
    plain = open_sampler(graph_file(tmp_path / "plain.onnx", props=None), device="cpu")
    assert plain.meta is None and (plain.channels, plain.height, plain.width) == (3, 2, 2)
    free = graph_file(
        tmp_path / "free.onnx", props=None, out_shape=["batch", 3, "h", "w"], opaque=True
    )
    with pytest.raises(UserError, match="free image dims"):
        open_sampler(free, device="cpu")
    huge = graph_file(
        tmp_path / "huge.onnx",
        props=None,
        z_shape=["batch", 2**28],
        out_shape=["batch", 2**26, 2, 2],
        reshape_to=[-1, 2**26, 2, 2],
    )
    with pytest.raises(UserError, match="the latent size is 268,435,456; expected 1 to"):
        open_sampler(huge, device="cpu")


# ---- .pt2 archives -------------------------------------------------------------------------------


def leftovers() -> set[str]:
    tmp = Path(tempfile.gettempdir())
    return {p.name for pattern in ("aotinductor_*", "progan-aoti-*") for p in tmp.glob(pattern)}


def archive(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


@pytest.mark.parametrize(
    ("members", "links", "message"),
    [
        ({"pkg/../../escaped.txt": b"x"}, None, "climbs out of the unpacking folder"),
        ({"pkg/a/../../../escaped.txt": b"x"}, None, "climbs out"),
        ({"/tmp/escaped.txt": b"x"}, None, "has an absolute path"),
        ({}, {"pkg/data/link": "/etc/passwd"}, "is a symbolic link"),
    ],
)
def test_traversing_pt2_members_are_refused_before_anything_loads(
    members: dict, links: dict | None, message: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    import torch

    def never(*args: object) -> None:
        raise AssertionError("the package was loaded")

    monkeypatch.setattr(torch._inductor, "aoti_load_package", never)
    work = tmp_path / "work"
    work.mkdir()
    evil = archive(work / "evil.pt2", {"pkg/archive_format": b"pt2", **members}, links)
    before = leftovers()
    for main, extra in (
        (generate_main, ["--out", str(work / "g.png")]),
        (metrics_main, ["--metrics", "msssim"]),
    ):
        assert main(["--network", str(evil), *extra]) == 2
        err = capsys.readouterr().err
        assert "archive member" in err and message in err and "Traceback" not in err, err
    assert sorted(p.name for p in work.iterdir()) == ["evil.pt2"]
    assert not (tmp_path / "escaped.txt").exists() and leftovers() == before


def test_bad_packaged_metadata_is_refused_before_loading(tmp_path: Path, monkeypatch) -> None:
    import json

    import torch

    def never(*args: object) -> None:
        raise AssertionError("the package was loaded")

    monkeypatch.setattr(torch._inductor, "aoti_load_package", never)
    bad = json.dumps(props(channels="abc")).encode()
    path = archive(tmp_path / "g.pt2", {"g/data/aotinductor/model/abc.wrapper_metadata.json": bad})
    with pytest.raises(UserError, match="metadata 'channels' is 'abc'"):
        open_sampler(path)


def test_a_package_that_fails_to_load_leaves_no_folder_behind(tmp_path: Path) -> None:
    junk = archive(
        tmp_path / "junk.pt2",
        {
            "junk/archive_format": b"pt2",
            "junk/data/aotinductor/model/model.wrapper.so": b"not a library",
        },
    )
    before = leftovers()
    with pytest.raises(UserError, match="cannot load this AOTInductor package here"):
        aoti_package.load_aoti(junk)
    assert leftovers() == before
    (tmp_path / "text.pt2").write_text("not a zip")
    with pytest.raises(UserError, match="not a readable zip"):
        open_sampler(tmp_path / "text.pt2")


def test_help_says_a_package_runs_code(capsys: pytest.CaptureFixture[str]) -> None:
    for main in (generate_main, metrics_main):
        with pytest.raises(SystemExit):
            main(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "compiled code that runs when it is loaded" in text
        assert "trusted source" in text


def test_a_graph_that_fails_while_running_is_one_error(tmp_path: Path) -> None:
    path = graph_file(tmp_path / "bad.onnx", props=props(), reshape_to=[-1, 5, 2, 2], opaque=True)
    sampler = open_sampler(path, device="cpu")  # its declared signature is fine
    with pytest.raises(UserError, match=r"bad.onnx: onnxruntime failed to run it \("):
        sampler.sample(np.zeros((2, 12), np.float32))


def test_a_conditional_generator_file_is_fed_its_labels_by_name(tmp_path: Path) -> None:
    def conditional(path: Path, labels_type: int, classes: int = 10) -> Path:
        # images = reshape(z + labels @ W), row c of W all c: class c adds c to every pixel
        # (a file whose labels input is misdeclared ignores it: the check comes first)
        uses_labels = labels_type == TensorProto.FLOAT and classes == 10
        z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 12])
        labels = helper.make_tensor_value_info("labels", labels_type, ["batch", classes])
        images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 2, 2])
        shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 3, 2, 2])
        weights = np.repeat(np.arange(10, dtype=np.float32)[:, None], 12, axis=1)
        w = helper.make_tensor("w", TensorProto.FLOAT, [10, 12], weights.ravel().tolist())
        nodes = [
            helper.make_node("MatMul", ["labels", "w"], ["shift"]),
            helper.make_node("Add", ["z", "shift"], ["moved"]),
            helper.make_node("Reshape", ["moved", "shape"], ["images"]),
        ]
        if not uses_labels:
            nodes = [helper.make_node("Reshape", ["z", "shape"], ["images"])]
        graph = helper.make_graph(nodes, "g", [z, labels], [images], [shape, w])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        meta = reshape_meta(num_classes=10, inputs=("z", "labels"))
        for key, value in meta.to_props().items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(path))
        return path

    sampler = open_sampler(conditional(tmp_path / "c.onnx", TensorProto.FLOAT), device="cpu")
    assert sampler.num_classes == 10
    z = latents(3, 12, seed=1)
    got = sampler.sample(z, labels=class_labels([0, 3, 9], 3, 10))
    want = (z + np.array([0.0, 3.0, 9.0], np.float32)[:, None]).reshape(3, 3, 2, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # classes as indices: the seed's latents, one class for all or one per image
    by_seed = sampler.sample_uint8(3, seed=1, classes=[0, 3, 9])
    np.testing.assert_array_equal(by_seed, to_uint8(want))
    with pytest.raises(UserError, match=r"a class-conditional generator \(10 classes\) needs"):
        sampler.sample(z)
    with pytest.raises(UserError, match=r"labels must be one-hot \[3, 10\], got \[3, 9\]"):
        sampler.sample(z, labels=np.zeros((3, 9), np.float32))
    with pytest.raises(UserError, match=r"class 10 is out of range: .* 10 classes \(0-9\)"):
        sampler.sample_uint8(2, seed=0, classes=10)
    with pytest.raises(UserError, match=r"expected float32 one-hot \[N, 10\]"):
        open_sampler(conditional(tmp_path / "i.onnx", TensorProto.INT64), device="cpu")
    with pytest.raises(UserError, match=r"'labels' tensor\(float\) \[.N., 9\]; expected"):
        open_sampler(conditional(tmp_path / "k.onnx", TensorProto.FLOAT, classes=9), device="cpu")
    unconditional = open_sampler(graph_file(tmp_path / "u.onnx", props=props()), device="cpu")
    with pytest.raises(UserError, match="an unconditional generator takes no labels"):
        unconditional.sample(z, labels=class_labels(1, 3, 10))
    with pytest.raises(UserError, match="an unconditional generator takes no classes"):
        unconditional.sample_uint8(3, seed=0, classes=1)
    path = graph_file(tmp_path / "z_only.onnx", props=props(num_classes="10", inputs="z,labels"))
    with pytest.raises(UserError, match="its inputs are z; expected the inputs z, labels"):
        open_sampler(path, device="cpu")
