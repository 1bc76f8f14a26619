"""`progan-import` end to end: the folder it writes (spec.yaml + checkpoint-000000000.pt), what it
prints, exit code 2 for every user error with nothing left behind, --force, and the checkpoint
read back through progan_dsl.checkpoint (G_ema = the pickle's Gs). Then the two released
configurations: CelebA-HQ 1024 (fused, official defaults: 23,071,507 parameters in G) through
ONNX export and image generation, and an LSUN-style 256 network (unfused, as legacy.py converts
the Theano networks)."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from progan_dsl.cli import _run
from progan_dsl.compiler import compile_spec
from progan_dsl.pretrained import convert_pickle, import_pickle
from progan_dsl.pretrained.cli import main
from tests.pretrained.conftest import SMALL
from tests.pretrained.official_format import (
    D_DEFAULTS,
    G_DEFAULTS,
    dump,
    official_tuple,
    variables_of,
)
from tests.pretrained.reference import OfficialG
from tests.pretrained.test_weights import REL_TOL, rel_err

G16 = SMALL | dict(resolution=16)
FILES = ["checkpoint-000000000.pt", "spec.yaml"]


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = _run(main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def checkpoint_module():
    return pytest.importorskip("progan_dsl.checkpoint", reason="the lead's typed checkpoint module")


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, tuple]:
    fakes = official_tuple(G16, G16, seed=11)
    return dump(fakes, tmp_path / "karras-small-16x16.pkl"), fakes


def test_import_writes_spec_and_checkpoint_and_says_what_next(small, tmp_path, capsys):
    checkpoint_module()
    pkl, _ = small
    out = tmp_path / "imported"
    rc, stdout, stderr = cli([pkl, "--out", out], capsys)
    assert rc == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imported", pkl.name]  # no temp left
    lines = stdout.splitlines()
    assert lines[0] == (
        f"read {pkl} (G 'G', D 'D', Gs 'Gs'; pickle protocol 4, lod 0); nothing in it was run"
    )
    assert lines[1] == (
        "  G: 34,529 parameters = 34,379 in the 16/stable G + 150 in the toRGB "
        "layers of lower resolutions (used only while growing; not stored)"
    )
    assert lines[2] == (
        "  D: 34,921 parameters = 34,729 in the 16/stable D + 192 in the fromRGB "
        "layers of lower resolutions (used only while growing; not stored)"
    )
    assert lines[3].startswith(f"wrote {out / 'spec.yaml'} (spec 'karras_small_16x16', sha256 ")
    assert lines[4].startswith(f"wrote {out / FILES[0]} (stage 16/stable: G, D, G_ema = Gs; ")
    ckpt = out / FILES[0]
    assert lines[5:] == [
        "next:",
        f"  progan-export --network {ckpt} --out karras_small_16x16.onnx",
        f"  progan-generate --network {ckpt} --num 16 --seed 0 --out karras_small_16x16-grid.png",
        f"  progan-metrics --data DATASET --network {ckpt} --metrics swd",
        f"  progan-train {out / 'spec.yaml'} --data DATASET --resume {ckpt}   # fine-tune",
    ]
    program = compile_spec(out / "spec.yaml")  # the written spec stands alone
    assert program.params("G", program.final_stage) == 34_379


def test_the_checkpoint_holds_g_d_and_gs_as_g_ema(small, tmp_path, capsys):
    Checkpoint = checkpoint_module().Checkpoint
    pkl, fakes = small
    out = tmp_path / "imported"
    assert cli([pkl, "--out", out, "--name", "small"], capsys)[0] == 0
    ckpt = Checkpoint.load(out)
    assert (ckpt.stage.resolution, ckpt.stage.phase, ckpt.images_shown) == (16, "stable", 0)
    assert ckpt.spec_text == (out / "spec.yaml").read_text()
    assert ckpt.info["imported_from"] == pkl.name
    assert ckpt.info["official_static_kwargs"]["G"] == G16
    assert ckpt.info["official_lod"] == 0.0
    z = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    for ema, fake in ((True, fakes[2]), (False, fakes[0])):
        G = ckpt.generator(ema=ema)
        with torch.no_grad():
            ours = G(torch.from_numpy(z)).double().numpy()
        assert rel_err(ours, OfficialG(G_DEFAULTS | G16, variables_of(fake))(z)) < REL_TOL
    D = ckpt.program().build("D", ckpt.stage)
    D.load_state_dict(ckpt.D)


def test_user_errors_exit_2_and_leave_nothing(small, tmp_path, capsys):
    pkl, _ = small
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    afile = tmp_path / "afile"
    afile.write_text("x")
    cond1 = dump(  # conditioned on one label component (official '-cond1')
        official_tuple(
            SMALL | dict(resolution=32, label_size=1), SMALL | dict(resolution=32, label_size=1)
        ),
        tmp_path / "cond1.pkl",
    )
    cases = [
        (
            [pkl, "--out", full],
            f"error: {full}: folder is not empty; give a new or empty folder, "
            "or --force to replace spec.yaml and checkpoint-000000000.pt in it",
        ),
        (
            [pkl, "--out", afile],
            f"error: {afile}: exists and is not a folder; give a new or empty folder for --out",
        ),
        (
            [pkl, "--out", tmp_path / "n", "--name", "9lives"],
            "error: --name '9lives': a spec name "
            "is an identifier (a letter, then up to 63 letters, digits or underscores)",
        ),
        (
            [cond1, "--out", tmp_path / "c"],
            f"error: {cond1}: G (network 'G', G_paper): static argument label_size=1: the spec "
            "language conditions on 2..65536 classes",
        ),
        (
            [tmp_path / "missing.pkl", "--out", tmp_path / "m"],
            f"error: {tmp_path / 'missing.pkl'}: cannot read: No such file or directory",
        ),
        ([pkl], "error: progan-import: the following arguments are required: --out"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, message in cases:
        rc, stdout, stderr = cli(argv, capsys)
        assert rc == 2 and stderr.startswith(message) and "Traceback" not in stderr, stderr
        assert stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


def test_force_replaces_only_its_two_files(small, tmp_path, capsys):
    checkpoint_module()
    pkl, _ = small
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "spec.yaml").write_text("old")
    newer = out / "checkpoint-000100000.pt"
    newer.write_bytes(b"not really")
    rc, stdout, stderr = cli([pkl, "--out", out, "--force"], capsys)
    assert rc == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [FILES[0], newer.name, "keep.txt", "spec.yaml"]
    assert (out / "keep.txt").read_text() == "mine" and newer.read_bytes() == b"not really"
    assert (out / "spec.yaml").read_text().startswith("# Imported by progan-import from ")
    assert (
        f"note: {newer} is newer; used as a run folder, {out} resolves to it, so name the "
        "checkpoint file itself"
    ) in stdout


def test_a_failed_write_leaves_no_folder(small, tmp_path, monkeypatch):
    """A failure while writing (here a full disk in the middle of the checkpoint) leaves neither
    DIR nor its temporary sibling; the error itself is the shared CLI's to format."""
    ckmod = checkpoint_module()
    pkl, _ = small

    def broken_save(self, target):
        Path(target).write_bytes(b"half")
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(ckmod.Checkpoint, "save", broken_save)
    with pytest.raises(OSError, match="No space left on device"):
        import_pickle(pkl, tmp_path / "imported")
    assert sorted(p.name for p in tmp_path.iterdir()) == [pkl.name]


# ---- the released configurations ---------------------------------------------------------------


@pytest.mark.slow
def test_celebahq_1024_imports_exports_to_onnx_and_generates(tmp_path, capsys):
    """Official defaults at 1024x1024 with random values (3 x ~92 MB of float32 variables)."""
    Checkpoint = checkpoint_module().Checkpoint
    ort = pytest.importorskip("onnxruntime")
    from progan_dsl.export import export_onnx

    g = dict(num_channels=3, resolution=1024, label_size=0, latent_size=512)
    pkl = dump(
        official_tuple(g, dict(num_channels=3, resolution=1024, label_size=0), seed=2),
        tmp_path / "karras2018iclr-celebahq-1024x1024.pkl",
    )
    gc.collect()
    out = tmp_path / "celebahq"
    rc, stdout, stderr = cli([pkl, "--out", out], capsys)
    assert rc == 0, stderr
    assert (
        "  G: 23,079,115 parameters = 23,071,507 in the 1024/stable G + 7,608 in the toRGB layers"
    ) in stdout
    assert (
        "  D: 23,087,249 parameters = 23,077,137 in the 1024/stable D + 10,112 in the fromRGB "
        "layers"
    ) in stdout
    pkl.unlink()
    ckpt = Checkpoint.load(out)
    G = ckpt.generator(ema=True)
    assert sum(p.numel() for p in G.parameters()) == 23_071_507
    onnx_path = export_onnx(ckpt.program(), ckpt.stage, G, tmp_path / "g.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    images = session.run(None, {session.get_inputs()[0].name: z})[0]
    with torch.no_grad():
        ours = G(torch.from_numpy(z)).numpy()
    assert images.shape == (1, 3, 1024, 1024) and np.isfinite(images).all()
    assert rel_err(images.astype(np.float64), ours.astype(np.float64)) < REL_TOL
    generate = pytest.importorskip("progan_dsl.generate.cli", reason="the lead's progan-generate")
    png = tmp_path / "grid.png"
    assert _run(generate.main, ["--network", str(out), "--num", "1", "--out", str(png)]) == 0
    from PIL import Image

    with Image.open(png) as image:
        assert image.size[0] >= 1024 and image.size[1] >= 1024


@pytest.mark.slow
def test_lsun_256_unfused_imports(tmp_path):
    """legacy.py's conversion of the Theano networks: unfused, mbstd_group_size 16 in both
    networks, named after the build functions, no label_size."""
    g = dict(
        num_channels=3,
        resolution=256,
        fmap_base=8192,
        fmap_decay=1.0,
        fmap_max=512,
        latent_size=512,
        normalize_latents=True,
        use_wscale=True,
        use_pixelnorm=True,
        use_leakyrelu=True,
        fused_scale=False,
        mbstd_group_size=16,
    )
    d = dict(
        num_channels=3,
        resolution=256,
        fmap_base=8192,
        fmap_decay=1.0,
        fmap_max=512,
        use_wscale=True,
        fused_scale=False,
        mbstd_group_size=16,
    )
    fakes = official_tuple(g, d, seed=4)
    for fake, name in zip(fakes, ("G_paper", "D_paper", "G_paper")):
        fake.state["name"] = name
    pkl = dump(fakes, tmp_path / "karras2018iclr-lsun-bedroom-256x256.pkl")
    imported = convert_pickle(pkl)
    assert str(imported.stage) == "256/stable"
    assert imported.counts["G"].stage == 23_036_995 and imported.counts["G"].pickle == 23_044_309
    assert imported.counts["D"].stage == 23_042_625 and imported.counts["D"].pickle == 23_052_353
    arch = imported.loaded.spec.architecture
    assert not arch.fused_scale and arch.discriminator.last_block[0].group_size == 16
    v = variables_of(fakes[2])
    assert torch.equal(
        imported.G_ema["b64_conv0.weight"],
        torch.from_numpy(v["64x64/Conv0/weight"]).permute(3, 2, 0, 1),
    )
    assert torch.equal(
        imported.D["b256_conv1.weight"],
        torch.from_numpy(variables_of(fakes[1])["256x256/Conv1/weight"]).permute(3, 2, 0, 1),
    )
    assert D_DEFAULTS["fused_scale"] is True  # (the official default is fused; this one is not)


def test_an_empty_folder_is_filled_and_quiet_prints_nothing(small, tmp_path, capsys):
    checkpoint_module()
    pkl, _ = small
    out = tmp_path / "empty"
    out.mkdir()
    assert cli([pkl, "--out", out, "--quiet"], capsys) == (0, "", "")
    assert sorted(p.name for p in out.iterdir()) == FILES
