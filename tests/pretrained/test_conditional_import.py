"""progan-import of class-conditional official pickles (label_size > 0, official AC-GAN): the spec
it writes (`conditioning: {classes: label_size}`), parameter counts derived by hand for the
official CIFAR-10 conditional configuration, the refusals, and an official-format conditional
pickle whose imported networks reproduce the official networks, losses and gradients
(tests/train/test_conditional_numerics.py explains the method and the tolerances)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from progan_dsl.compiler import compile_spec
from progan_dsl.errors import UserError
from progan_dsl.pretrained import convert_pickle
from progan_dsl.pretrained.importer import _compiled_shapes
from progan_dsl.pretrained.official import (
    OfficialNetworks,
    discriminator_args,
    generator_args,
    spec_text,
)
from progan_dsl.pretrained.unpickle import NetworkState
from progan_dsl.pretrained.weights import (
    discriminator_variables,
    generator_variables,
    parameter_shapes,
    total_size,
)
from progan_dsl.spec import load_spec_text
from tests.pretrained.official_format import (
    CIFAR10_COND,
    d_shapes,
    g_shapes,
    official_tuple,
    variables_of,
)
from tests.train.test_conditional_numerics import (
    FINAL,
    GROUP,
    LATENT,
    OFFICIAL,
    TOL,
    Case,
    run_case,
    trainer,
)


def state(role: str, kwargs: dict[str, Any]) -> NetworkState:
    return NetworkState(
        role=role,
        name=role,
        build_func_name="D_paper" if role == "D" else "G_paper",
        static_kwargs=kwargs,
        variables={},
        build_module_src_sha256="",
    )


def networks(kw: dict[str, Any], lod: float = 0.0) -> OfficialNetworks:
    d = {k: v for k, v in kw.items() if k != "latent_size"}
    return OfficialNetworks(
        G=generator_args(state("G", kw), "x.pkl"),
        D=discriminator_args(state("D", d), "x.pkl"),
        lod=lod,
    )


def test_cifar10_conditional_counts_by_hand():
    """Official CIFAR-10 '-cond' (config.py: the dataset gives 3 channels, 32x32, label_size 10;
    G_paper / D_paper defaults: fmap_base 8192, fmap_max 512, latent nf(0) = 512): every width
    nf(0..4) is 512.
    G at 32x32: Dense (512 + 10) * 512*16 + 512 = 4,276,736; 4x4 Conv 9*512*512 + 512 = 2,359,808;
    8..32: 6 x 2,359,808 = 14,158,848; ToRGB_lod0 512*3 + 3 = 1,539: 20,796,931 (81,920 = 10 *
    8,192 more than unconditional); the pickle adds ToRGB of 4..16: 3 x 1,539.
    D at 32x32: FromRGB_lod0 3*512 + 512 = 2,048; 32..8: 6 x 2,359,808; 4x4 Conv 513*9*512 + 512
    = 2,364,416; Dense0 8192*512 + 512 = 4,194,816; Dense1 512 * (1 + 10) + 11 = 5,643:
    20,725,771; the pickle adds FromRGB of 4..16: 3 x 2,048."""
    nets = networks(CIFAR10_COND)
    assert (nets.G.latent_size, nets.G.label_size, nets.D.label_size) == (512, 10, 10)
    text = spec_text(nets, name="cifar10_cond", source="x.pkl", sha256="0" * 64, table=False)
    program = compile_spec(load_spec_text(text, "spec.yaml"))
    stage = program.stage(32, "stable")
    g = (522 * 8192 + 512) + 2_359_808 + 6 * 2_359_808 + 1_539
    d = 2_048 + 6 * 2_359_808 + (513 * 9 * 512 + 512) + (8192 * 512 + 512) + (512 * 11 + 11)
    assert g == 20_796_931 and d == 20_725_771
    assert program.params("G", stage) == g
    assert program.params("D", stage) == d
    g_table, d_table = generator_variables(nets), discriminator_variables(nets)
    assert total_size(g_table) == g + 3 * 1_539
    assert total_size(d_table) == d + 3 * 2_048
    assert {v.official: v.shape for v in g_table} == g_shapes(CIFAR10_COND)
    assert {v.official: v.shape for v in d_table} == d_shapes(CIFAR10_COND)
    assert _compiled_shapes(program, "G") == parameter_shapes(g_table)
    assert _compiled_shapes(program, "D") == parameter_shapes(d_table)
    assert program.num_classes == 10
    cond = program.spec.architecture.conditioning
    assert cond is not None
    assert (cond.classes, cond.generator, cond.discriminator, cond.weight) == (
        10,
        "concat",
        "acgan",
        1.0,
    )
    assert "  conditioning: {classes: 10}" in text
    assert "32x32,\n  3 channels, latent 512, 10 classes, imported at stage 32 (lod 0)." in text


@pytest.mark.parametrize(
    ("label_size", "message"),
    [
        (
            1,
            "x.pkl: G (network 'G', G_paper): static argument label_size=1: the spec language "
            "conditions on 2..65536 classes given as one-hot labels (label_size 0: "
            "unconditional); a single label component (official '-cond1') cannot be imported",
        ),
        (65537, "static argument label_size=65537: the spec language conditions on 2..65536"),
        (-1, "static argument label_size=-1: must be an integer >= 0"),
    ],
)
def test_label_sizes_the_spec_cannot_express_are_refused(label_size, message):
    with pytest.raises(UserError) as err:
        networks(CIFAR10_COND | {"label_size": label_size})
    assert message in str(err.value)


def test_g_and_d_must_agree_on_label_size(write_pickle):
    g = OFFICIAL | dict(latent_size=LATENT)
    d = OFFICIAL | dict(label_size=5)
    path = write_pickle(g, d)
    with pytest.raises(UserError) as err:
        convert_pickle(path)
    assert str(err.value) == (
        f"{path}: G has label_size=10 but D has 5; one spec describes both networks with one "
        "resolution and width table"
    )


@pytest.mark.parametrize("lod", [0.0, 1.0], ids=["lod0", "lod1"])
def test_a_conditional_pickle_imports_and_reproduces_the_official_maths(write_pickle, lod):
    """An official-format pickle (G_paper / D_paper, label_size 10, 16x16) imported at its stage
    (lod 0: 16x16, lod 1: 8x8 stable) computes the official images, scores, class logits, D and
    G losses and their gradients (float64 modules: the comparison is exact up to the losses'
    float32 terms, so every quantity is held to 1e-5)."""
    g = OFFICIAL | dict(latent_size=LATENT)
    d = OFFICIAL | dict(mbstd_group_size=GROUP)
    path = write_pickle(g, d, lod=lod, seed=3)
    imported = convert_pickle(path)
    assert imported.stage.resolution == FINAL >> int(lod)
    assert imported.program.num_classes == 10
    assert tuple(imported.G["b4_project.weight"].shape) == (16 * 16, LATENT + 10)
    assert tuple(imported.D["b4_dense1.weight"].shape) == (1 + 10, 16)
    G, D, _ = official_tuple(g, d, seed=3, lod=lod)  # the pickle's networks, as written
    case = Case(0, True, variables=(drop_lod(variables_of(G)), drop_lod(variables_of(D))))
    t = trainer(imported.program, imported.stage)
    assert t.G is not None and t.D is not None
    t.G.load_state_dict(imported.G)
    t.D.load_state_dict(imported.D)
    errors, _ = run_case(t, case, imported.stage, 1.0, torch.float64)
    assert max(errors.values()) <= TOL[torch.float64], errors


def drop_lod(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in variables.items() if k != "lod"}
