"""`extends`, `--set` overrides, and the texts a run records (standalone and resolved spec)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from progan_dsl.cli import train_main
from progan_dsl.spec import SpecError, load_spec, load_spec_text
from progan_dsl.spec.load import parse_key_path
from tests.conftest import SPECS, TINY

SHIPPED = sorted(SPECS.glob("*.yaml")) + [TINY]
# sha256 of specs/celebahq_1024_h100.yaml as it was written out in full, before it was shrunk
# to its differences with `extends` (that file at commit 5233d6e, loaded by the current spec
# language: the hash covers every resolved field, defaults included, so it moves when the
# language gains a field; re-measure it from that file then).
H100_HASH = "b2f6f4e0f0d32251872592765ec9012adc0033a63b746c96bc013e0c0615649b"


def test_h100_spec_is_its_differences_and_the_same_spec() -> None:
    loaded = load_spec(SPECS / "celebahq_1024_h100.yaml")
    assert loaded.hash == H100_HASH
    assert loaded.bases == (str(SPECS / "celebahq_1024.yaml"),)
    sched = loaded.spec.training.schedule
    assert sched.minibatch == {
        4: 512,
        8: 256,
        16: 128,
        32: 64,
        64: 32,
        128: 16,
        256: 16,
        512: 16,
        1024: 16,
    }
    assert sched.learning_rate == {256: 0.0015, 512: 0.002, 1024: 0.003}
    assert loaded.spec.architecture.final_resolution == 1024  # from the base
    text = (SPECS / "celebahq_1024_h100.yaml").read_text()
    assert "architecture:" not in text and len(text.splitlines()) < 20


def _tree(tmp: Path, **files: str) -> None:
    for name, text in files.items():
        (tmp / name).write_text(text)


def test_extends_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        **{
            "base.yaml": TINY.read_text(),
            "child.yaml": (
                "spec_version: 1\nextends: base.yaml\nname: child\n"
                "architecture:\n  latent_size: 32\n"
                "  generator:\n    block:\n      - {kind: upsample}\n"
                "      - {kind: conv, kernel: 5}\n"
                "training:\n  schedule:\n    minibatch: {16: 4}\n  loss: {kind: lsgan}\n"
            ),
        },
    )
    base, child = load_spec(tmp_path / "base.yaml"), load_spec(tmp_path / "child.yaml")
    arch = child.spec.architecture
    assert (child.spec.name, arch.latent_size, arch.image_channels) == ("child", 32, 1)
    assert [layer.kind for layer in arch.generator.block] == ["upsample", "conv"]  # replaced
    assert arch.generator.first_block == base.spec.architecture.generator.first_block
    # a per-resolution map is a mapping: the child changes 16 and keeps 4 and 8
    assert child.spec.training.schedule.minibatch == {4: 16, 8: 16, 16: 4}
    assert child.spec.training.loss.kind == "lsgan"  # another kind replaces the mapping
    assert child.spec.training.tick_kimg == base.spec.training.tick_kimg
    # marks: keys the child writes point into the child, the rest into the base
    assert child.doc.where(("architecture", "latent_size"))[:2] == (str(tmp_path / "child.yaml"), 5)
    assert child.doc.where(("architecture", "image_channels"))[:2] == (
        str(tmp_path / "base.yaml"),
        7,
    )
    assert child.doc.where(("architecture", "generator", "block", 1))[0].endswith("child.yaml")


def test_extends_same_values_same_hash(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        **{"base.yaml": TINY.read_text(), "child.yaml": "spec_version: 1\nextends: base.yaml\n"},
    )
    assert load_spec(tmp_path / "child.yaml").hash == load_spec(TINY).hash


def test_extends_from_text_takes_base_dir(tmp_path: Path) -> None:
    _tree(tmp_path, **{"base.yaml": TINY.read_text()})
    text = "spec_version: 1\nextends: base.yaml\nname: t2\n"
    assert load_spec_text(text, "<string>", base_dir=tmp_path).spec.name == "t2"


def test_overrides_as_yaml_values() -> None:
    loaded = load_spec(
        SPECS / "celebahq_1024.yaml",
        overrides=[
            "training.schedule.total_kimg=13000",
            "architecture.latent_size=256",
            "training.schedule.minibatch.64=16",
            "architecture.generator.block[1].kernel=5",
            "architecture.discriminator.block.0.kernel=1",
            "training.evaluation.metrics=[swd, fid]",
            "training.loss={kind: lsgan}",
            "description=''",
        ],
    )
    spec = loaded.spec
    assert spec.training.schedule.total_kimg == 13000.0
    assert spec.architecture.latent_size == 256
    assert spec.training.schedule.minibatch[64] == 16
    assert spec.training.schedule.minibatch[32] == 64  # untouched neighbour
    assert spec.architecture.generator.block[1].kernel == 5  # type: ignore[attr-defined]
    assert spec.architecture.discriminator.block[0].kernel == 1  # type: ignore[attr-defined]
    assert spec.training.evaluation.metrics == ["swd", "fid"]
    assert spec.training.loss.kind == "lsgan"
    assert spec.description == ""
    assert loaded.overrides[0] == "training.schedule.total_kimg=13000"
    assert loaded.hash != load_spec(SPECS / "celebahq_1024.yaml").hash


def test_override_into_a_default_section_and_last_one_wins() -> None:
    loaded = load_spec(
        TINY,
        overrides=[
            "training.loss.gp_lambda=5",
            "training.loss.gp_lambda=7",
            "training.optimizer.lr=0.01",
        ],
    )
    loss = loaded.spec.training.loss
    assert (loss.kind, loss.gp_lambda) == ("wgan_gp", 7.0)  # type: ignore[union-attr]
    assert loaded.spec.training.optimizer.lr == 0.01


def test_override_errors_name_the_argument() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / "celebahq_1024.yaml", overrides=["training.loss.gp_lambda=abc"])
    assert str(info.value) == (
        "invalid spec:\n  --set training.loss.gp_lambda=abc: training.loss.gp_lambda: "
        "input should be a valid number (got 'abc')"
    )


def test_key_paths() -> None:
    assert parse_key_path("training.schedule.minibatch.64", "x") == (
        "training",
        "schedule",
        "minibatch",
        64,
    )
    assert parse_key_path("architecture.generator.block[2].kernel", "x") == (
        "architecture",
        "generator",
        "block",
        2,
        "kernel",
    )
    assert parse_key_path("a.b[0][1]", "x") == ("a", "b", 0, 1)
    for bad in ("a.b-c", "a.[0]x", "a..b", "a.b[x]"):
        with pytest.raises(SpecError):
            parse_key_path(bad, "x")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_standalone_and_resolved_texts_load_back_to_the_same_hash(path: Path) -> None:
    loaded = load_spec(path)
    alone = loaded.standalone_text()
    assert load_spec_text(alone, "alone.yaml").hash == loaded.hash
    assert "extends" not in yaml.safe_load(alone)
    if loaded.standalone:
        assert alone == loaded.doc.text
    resolved = loaded.resolved_yaml()
    assert load_spec_text(resolved, "resolved.yaml").hash == loaded.hash
    data = yaml.safe_load(resolved)
    assert set(data["training"]["schedule"]["minibatch"]) == set(
        loaded.spec.architecture.resolutions
    )
    assert data["training"]["ema"]["decay"] == loaded.spec.training.ema.decay
    assert resolved.startswith(
        f"# Spec '{loaded.spec.name}' with every default filled in (sha256 {loaded.hash}).\n"
    )


def test_standalone_text_of_overrides_and_extends_stands_alone(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        **{
            "base.yaml": TINY.read_text(),
            "child.yaml": "spec_version: 1\nextends: base.yaml\nname: child\n",
        },
    )
    loaded = load_spec(tmp_path / "child.yaml", overrides=["architecture.latent_size=8"])
    alone = loaded.standalone_text()
    assert alone.splitlines()[:4] == [
        f"# Spec 'child' (sha256 {loaded.hash}), standalone: made from",
        f"#   {tmp_path / 'base.yaml'}",
        f"#   {tmp_path / 'child.yaml'}",
        "#   --set architecture.latent_size=8",
    ]
    (tmp_path / "base.yaml").unlink()  # it must not be needed any more
    again = load_spec_text(alone, str(tmp_path / "copy.yaml"))
    assert again.hash == loaded.hash and again.spec.architecture.latent_size == 8


def test_resolved_yaml_fills_in_defaults() -> None:
    data = yaml.safe_load(load_spec(TINY).resolved_yaml())
    loss = data["training"]["loss"]  # tiny writes no loss: the WGAN-GP defaults of Appendix A
    assert loss == {
        "kind": "wgan_gp",
        "gp_lambda": 10.0,
        "gp_target": 1.0,
        "drift": 0.001,
        "gp_gradient": "full_resolution",
    }
    assert data["architecture"]["base_shape"] == [4, 4]
    assert "out" not in data["architecture"]["generator"]["to_rgb"]


def test_yaml_12_floats() -> None:
    text = TINY.read_text().replace(
        "  final_resolution: 16", "  final_resolution: 16\n  pixel_norm: {epsilon: 1e-6}"
    )
    assert load_spec_text(text).spec.architecture.pixel_norm.epsilon == 1e-6


def test_writing_a_default_out_does_not_change_the_hash() -> None:
    import warnings

    base = TINY.read_text().replace("    total_kimg: 0.384\n", "")
    omitted = base.replace("    fade_kimg: 0.064\n    stable_kimg: 0.064\n", "")
    written = base.replace(
        "    fade_kimg: 0.064\n    stable_kimg: 0.064\n",
        "    fade_kimg: 600\n    stable_kimg: 600.0\n",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pydantic serializer warning for the int default
        assert load_spec_text(omitted).hash == load_spec_text(written).hash


def test_a_derived_spec_does_not_inherit_the_description(tmp_path: Path) -> None:
    """The description says what one file is: a spec that extends another has its own, or none
    (not the base's, which describes another run). Everything else is inherited."""
    base = TINY.read_text().replace("name: tiny\n", "name: tiny\ndescription: MNIST digits\n")
    _tree(
        tmp_path,
        **{
            "base.yaml": base,
            "plain.yaml": "spec_version: 1\nextends: base.yaml\nname: plain\n",
            "own.yaml": "spec_version: 1\nextends: base.yaml\nname: own\ndescription: Mine\n",
            "grandchild.yaml": "spec_version: 1\nextends: own.yaml\nname: grandchild\n",
        },
    )
    assert load_spec(tmp_path / "base.yaml").spec.description == "MNIST digits"
    plain = load_spec(tmp_path / "plain.yaml")
    assert plain.spec.description == ""
    assert plain.spec.architecture.latent_size == 16  # the rest is inherited
    assert "MNIST" not in plain.standalone_text() and "MNIST" not in plain.resolved_yaml()
    assert not plain.doc.has(("description",))  # no mark left pointing into the base
    assert load_spec(tmp_path / "own.yaml").spec.description == "Mine"
    assert load_spec(tmp_path / "grandchild.yaml").spec.description == ""
    # --set still sets it on a derived spec
    loaded = load_spec(tmp_path / "plain.yaml", overrides=["description=Set here"])
    assert loaded.spec.description == "Set here"


@pytest.mark.parametrize(
    "value",
    ['"1e5"', '"1E-3"', '".5e3"', '"1_000e3"', '"yes"', '"null"', '"a\\Nb"', '"a\\Lb"', '"\\a"'],
    ids=["1e5", "1E-3", ".5e3", "1_000e3", "yes", "null", "nel", "line_sep", "bell"],
)
def test_stored_spec_reads_back_every_string(value: str, tmp_path: Path) -> None:
    """A string the loader would read as a number (YAML 1.2 floats such as 1e5) or that holds
    a character YAML folds (NEL) is written so that the stored spec reads back the same."""
    want = yaml.safe_load(value)
    assert isinstance(want, str)
    loaded = load_spec(TINY, overrides=[f"description={value}"])
    assert loaded.spec.description == want
    for text in (loaded.standalone_text(), loaded.resolved_yaml()):
        again = load_spec_text(text, "stored.yaml")
        assert again.spec.description == want and again.hash == loaded.hash
    # the same through extends (the merged keys are written out too)
    child = f"spec_version: 1\nextends: {TINY}\nname: child\ndescription: {value}\n"
    (tmp_path / "child.yaml").write_text(child)
    derived = load_spec(tmp_path / "child.yaml")
    assert load_spec_text(derived.standalone_text(), "stored.yaml").hash == derived.hash


def test_set_with_a_line_break_exits_2_before_a_run_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stored spec records each --set argument on one comment line: a line break would
    break it, so the argument is refused when it is parsed, before anything is written."""
    out = tmp_path / "runs"
    argv = [str(TINY), "--set", "description=a\n  b", "--outdir", str(out), "--device", "cpu"]
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(
        "error: invalid spec:\n  --set description=a\\n  b: holds a line break (U+000A); an "
        "argument is one line: write a list or mapping in flow style ([4, 8], {kind: lsgan}) and "
        'a line break inside a string as \\n in double quotes ("a\\nb")'
    ), err
    assert not out.exists()
    # the way the message suggests works, and survives storage
    loaded = load_spec(TINY, overrides=['description="a\\nb"'])
    assert loaded.spec.description == "a\nb"
    assert load_spec_text(loaded.standalone_text(), "stored.yaml").spec.description == "a\nb"
