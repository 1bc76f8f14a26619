"""Imported networks compute what the official networks compute: the generated modules with the
converted weights against the independent numpy float64 G_paper / D_paper of `reference.py`, on
official-format pickles with random values (fused and unfused, ReLU / no pixel norm / no wscale /
no minibatch stddev, a width table, a lod > 0 snapshot); and every variable mismatch is named.

Tolerance: the modules run in float32, the reference in float64; the measured worst relative
error (max |ours - official| / max |official|) is 3.7e-6 over these cases on an AVX2 machine, so
1e-4 leaves a factor 27 for other CPUs' summation orders. An unflipped Conv0_up kernel is off by
order 1, so the check tells the layouts apart."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from progan_dsl.errors import UserError
from progan_dsl.pretrained import convert_pickle
from progan_dsl.pretrained.importer import ImportedNetworks
from progan_dsl.pretrained.weights import convert
from tests.pretrained.conftest import SMALL
from tests.pretrained.official_format import (
    D_DEFAULTS,
    G_DEFAULTS,
    dump,
    official_tuple,
    variables_of,
)
from tests.pretrained.reference import OfficialD, OfficialG, downscale2d, upscale2d

REL_TOL = 1e-4  # see the module docstring
N = 8  # minibatch: two groups of 4 for the minibatch stddev layer


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    assert ours.shape == ref.shape
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def modules(imported: ImportedNetworks, key: str) -> torch.nn.Module:
    net = "D" if key == "D" else "G"
    module = imported.program.build(net, imported.stage)
    module.load_state_dict(getattr(imported, key))
    return module.eval()


def run(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).double().numpy()


def compare(
    imported: ImportedNetworks,
    fakes: tuple[Any, ...],
    g: dict[str, Any],
    d: dict[str, Any],
    *,
    lod: int = 0,
) -> dict[str, float]:
    """Relative errors of G (pickle G), G_ema (pickle Gs) and D against the reference."""
    rng = np.random.default_rng(7)
    latent = imported.loaded.spec.architecture.latent_size
    z = rng.standard_normal((N, latent)).astype(np.float32)
    res = g["resolution"]
    images = rng.standard_normal((N, g["num_channels"], res, res)).astype(np.float32)
    errors = {}
    for key, fake in (("G", fakes[0]), ("G_ema", fakes[2])):
        ours = run(modules(imported, key), z)
        official = OfficialG(G_DEFAULTS | g, variables_of(fake))(z, lod_in=lod)
        errors[key] = rel_err(upscale2d(ours, 2**lod) if lod else ours, official)
    ours_d = run(
        modules(imported, "D"), downscale2d(images, 2**lod).astype(np.float32) if lod else images
    )
    errors["D"] = rel_err(
        ours_d, OfficialD(D_DEFAULTS | d, variables_of(fakes[1]))(images, lod_in=lod)
    )
    return errors


FUSED = dict(fused_scale=True, pixelnorm_epsilon=1e-4, dtype="float16", latent_size=24)
CASES = {
    "fused": (SMALL | dict(resolution=16) | FUSED, SMALL | dict(resolution=16, mbstd_group_size=4)),
    "unfused": (
        SMALL | dict(resolution=16, fused_scale=False, mbstd_group_size=16),
        SMALL | dict(resolution=16, fused_scale=False, mbstd_group_size=16),
    ),
    "relu-plain": (
        dict(
            num_channels=1,
            resolution=32,
            fmap_base=128,
            fmap_max=16,
            fmap_decay=0.5,
            use_leakyrelu=False,
            use_pixelnorm=False,
            normalize_latents=False,
            use_wscale=False,
            latent_size=12,
        ),
        dict(
            num_channels=1,
            resolution=32,
            fmap_base=128,
            fmap_max=16,
            fmap_decay=0.5,
            use_wscale=False,
            mbstd_group_size=0,
        ),
    ),
    "table-group": (
        SMALL | dict(resolution=8, fmap_decay=0.0),
        SMALL | dict(resolution=8, fmap_decay=0.0, mbstd_group_size=2),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_imported_networks_match_the_official_maths(case, write_pickle):
    g, d = CASES[case]
    fakes = official_tuple(g, d, seed=3)
    path = dump(fakes, write_pickle(g, d).parent / f"{case}.pkl")
    imported = convert_pickle(path)
    errors = compare(imported, fakes, g, d)
    assert errors["G"] < REL_TOL and errors["G_ema"] < REL_TOL, errors
    assert errors["D"] < REL_TOL, errors


def test_a_snapshot_at_lod_1_is_its_8x8_stable_stage(write_pickle):
    g, d = SMALL | dict(resolution=16), SMALL | dict(resolution=16)
    fakes = official_tuple(g, d, seed=5, lod=1.0)
    imported = convert_pickle(dump(fakes, write_pickle(g, d).parent / "lod1.pkl"))
    assert str(imported.stage) == "8/stable"
    errors = compare(imported, fakes, g, d, lod=1)
    assert max(errors.values()) < REL_TOL, errors


def test_g_ema_comes_from_gs_and_differs_from_g(write_pickle):
    g = SMALL | dict(resolution=8)
    imported = convert_pickle(write_pickle(g, g))
    assert set(imported.G) == set(imported.G_ema)
    assert not torch.equal(imported.G["b8_conv0.weight"], imported.G_ema["b8_conv0.weight"])


def test_layouts_by_hand(write_pickle):
    """The four layouts on concrete arrays: conv HWIO -> OIHW, Conv0_up flipped, dense [in, out]
    -> [out, in] with the 4x4 reshape order kept."""
    g = SMALL | dict(resolution=8)
    fakes = official_tuple(g, g, seed=1)
    imported = convert_pickle(dump(fakes, write_pickle(g, g).parent / "layouts.pkl"))
    v = variables_of(fakes[0])
    up = v["8x8/Conv0_up/weight"]  # [3, 3, out, in]
    o, i, y, x = 5, 7, 0, 2
    assert imported.G["b8_conv0.weight"][o, i, y, x] == up[2 - y, 2 - x, o, i]
    conv = v["8x8/Conv1/weight"]  # [3, 3, in, out]
    assert imported.G["b8_conv1.weight"][o, i, y, x] == conv[y, x, i, o]
    dense = v["4x4/Dense/weight"]  # [latent, C * 16], output c*16 + y*4 + x
    c, yy, xx, j = 3, 1, 2, 9
    assert (
        imported.G["b4_project.weight"][c * 16 + yy * 4 + xx, j] == dense[j, c * 16 + yy * 4 + xx]
    )
    assert convert(np.arange(6, dtype=np.float32).reshape(2, 3), "matrix").tolist() == [
        [0.0, 3.0],
        [1.0, 4.0],
        [2.0, 5.0],
    ]


def test_an_unflipped_up_conv_would_be_caught(write_pickle):
    g, d = CASES["fused"]
    fakes = official_tuple(g, d, seed=3)
    imported = convert_pickle(dump(fakes, write_pickle(g, d).parent / "flip.pkl"))
    v = variables_of(fakes[2])
    for key in [k for k in imported.G_ema if k.endswith("conv0.weight") and k != "b4_conv0.weight"]:
        res = key.split("_")[0][1:]
        raw = torch.from_numpy(v[f"{res}x{res}/Conv0_up/weight"]).permute(2, 3, 0, 1)
        imported.G_ema[key] = raw.contiguous()  # permuted, not flipped
    assert compare(imported, fakes, g, d)["G_ema"] > 1e-2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda v: v.pop("8x8/Conv0_up/weight"), "missing 8x8/Conv0_up/weight [3, 3, 16, 32]"),
        (
            lambda v: v.__setitem__("8x8/Extra/weight", np.zeros((1, 2), np.float32)),
            "unknown 8x8/Extra/weight [1, 2]",
        ),
        (
            lambda v: v.__setitem__("4x4/Dense/bias", np.zeros(16, np.float32)),
            "wrong shape 4x4/Dense/bias [16] (expected [32])",
        ),
    ],
    ids=["missing", "unknown", "shape"],
)
def test_variable_mismatches_are_named(tmp_path, edit, message):
    g = SMALL | dict(resolution=8)
    fakes = official_tuple(g, g)
    variables = dict(fakes[2].state["variables"])
    edit(variables)
    fakes[2].state["variables"] = list(variables.items())
    path = dump(fakes, tmp_path / "bad.pkl")
    with pytest.raises(UserError) as err:
        convert_pickle(path)
    assert str(err.value) == (
        f"{path}: Gs (network 'Gs', G_paper): its variables are not those of "
        f"the official G_paper with these static arguments: {message}"
    )


def test_fused_names_under_unfused_arguments_are_named(tmp_path):
    g = SMALL | dict(resolution=8)
    fakes = official_tuple(g, g)
    for net in fakes[0::2]:
        net.state["static_kwargs"]["fused_scale"] = False
    path = dump(fakes, tmp_path / "mixed.pkl")
    with pytest.raises(UserError) as err:
        convert_pickle(path)
    assert str(err.value).endswith(
        "missing 8x8/Conv0/weight [3, 3, 32, 16], 8x8/Conv0/bias [16]; unknown "
        "8x8/Conv0_up/weight [3, 3, 16, 32], 8x8/Conv0_up/bias [16]"
    )
