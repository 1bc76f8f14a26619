"""Static arguments -> spec: the official defaults, the refusals (each names its argument), the
width rule or table, the stage from `lod`, and parameter counts derived by hand from Table 2."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from progan_dsl.compiler import compile_spec
from progan_dsl.errors import UserError
from progan_dsl.pretrained.importer import _compiled_shapes, convert_pickle
from progan_dsl.pretrained.official import (
    OfficialNetworks,
    discriminator_args,
    generator_args,
    official_networks,
    spec_name,
    spec_text,
    yaml_float,
)
from progan_dsl.pretrained.unpickle import NetworkState, read_official_pickle
from progan_dsl.pretrained.weights import (
    discriminator_variables,
    generator_variables,
    parameter_shapes,
    total_size,
)
from progan_dsl.spec import load_spec_text
from tests.pretrained.conftest import SMALL
from tests.pretrained.official_format import D_DEFAULTS, d_shapes, g_shapes

CELEBAHQ = dict(num_channels=3, resolution=1024, label_size=0, latent_size=512)  # official defaults
LSUN = dict(num_channels=3, resolution=256, fused_scale=False, mbstd_group_size=16)  # legacy.py


def state(role: str, kwargs: dict[str, Any], func: str | None = None) -> NetworkState:
    func = func or ("D_paper" if role == "D" else "G_paper")
    return NetworkState(
        role=role,
        name=role,
        build_func_name=func,
        static_kwargs=kwargs,
        variables={},
        build_module_src_sha256="",
    )


def networks(
    g: dict[str, Any], d: dict[str, Any] | None = None, lod: float = 0.0
) -> OfficialNetworks:
    """Arguments of G (and D: G's shared ones unless given) as the importer reads them."""
    if d is None:
        d = {k: v for k, v in g.items() if k in D_DEFAULTS}
    return OfficialNetworks(
        G=generator_args(state("G", g), "x.pkl"),
        D=discriminator_args(state("D", d), "x.pkl"),
        lod=lod,
    )


def compiled(nets: OfficialNetworks):
    text = spec_text(nets, name="t", source="x.pkl", sha256="0" * 64, table=False)
    return compile_spec(load_spec_text(text, "spec.yaml"))


def test_celebahq_1024_counts_are_table_2_plus_the_growing_rgb_layers():
    """Hand-derived (Table 2, biases per output channel): G 23,071,507 and D 23,077,137 in the
    final stable networks; the pickle adds the toRGB / fromRGB layers of 4..512:
    G 4 x (512*3 + 3) + (256*3 + 3) + (128*3 + 3) + (64*3 + 3) + (32*3 + 3) = 7,608,
    D 4 x (3*512 + 512) + (3*256 + 256) + (3*128 + 128) + (3*64 + 64) + (3*32 + 32) = 10,112."""
    nets = networks(CELEBAHQ)
    program = compiled(nets)
    stage = program.stage(1024, "stable")
    assert program.params("G", stage) == 23_071_507
    assert program.params("D", stage) == 23_077_137
    g_table, d_table = generator_variables(nets), discriminator_variables(nets)
    assert total_size(g_table) == 23_071_507 + 7_608
    assert total_size(d_table) == 23_077_137 + 10_112
    # the official table here and the independent one of the test pickles agree on every variable
    assert {v.official: v.shape for v in g_table} == g_shapes(CELEBAHQ)
    assert {v.official: v.shape for v in d_table} == d_shapes(CELEBAHQ)
    # over all stages the compiled spec has exactly the pickle's parameters
    assert _compiled_shapes(program, "G") == parameter_shapes(g_table)
    assert _compiled_shapes(program, "D") == parameter_shapes(d_table)


def test_lsun_256_unfused_counts():
    """G 256: 4,194,816 + 2,359,808 + 6 x 2,359,808 + (1,179,904 + 590,080) + (295,040 + 147,584)
    + (73,792 + 36,928) + 195 = 23,036,995; toRGB of 4..128: 4 x 1,539 + 771 + 387 = 7,314.
    D 256: fromRGB 3*64 + 64, blocks 256..8 (64->64, 64->128; 128->128, 128->256; 256->256,
    256->512; 3 x two 512->512), 4x4 conv 513->512, dense 8192->512, 512->1: 23,042,625; the
    fromRGB of 4..128 add 4 x 2,048 + 1,024 + 512."""
    nets = networks(LSUN)
    program = compiled(nets)
    stage = program.stage(256, "stable")
    assert program.params("G", stage) == 23_036_995
    assert total_size(generator_variables(nets)) == 23_036_995 + 7_314
    d = (
        (3 * 64 + 64)
        + (36_928 + 73_856)
        + (147_584 + 295_168)
        + (590_080 + 1_180_160)
        + 6 * 2_359_808
        + (513 * 512 * 9 + 512)
        + (8192 * 512 + 512)
        + (512 + 1)
    )
    assert program.params("D", stage) == d == 23_042_625
    assert total_size(discriminator_variables(nets)) == d + 4 * 2_048 + 1_024 + 512
    spec = program.spec.architecture
    assert spec.fused_scale is False
    assert spec.discriminator.block[2].takes_activation is False  # act, then pool (Conv1)
    assert spec.discriminator.last_block[0].group_size == 16


def test_spec_text_of_the_official_defaults():
    text = spec_text(
        networks(CELEBAHQ),
        name="celebahq",
        source="karras2018iclr-celebahq.pkl",
        sha256="ab" * 32,
        table=False,
    )
    arch = load_spec_text(text, "spec.yaml").spec.architecture
    assert (arch.latent_size, arch.image_channels, arch.final_resolution) == (512, 3, 1024)
    assert (arch.channels.rule.base, arch.channels.rule.max, arch.channels.rule.decay) == (
        8192,
        512,
        1.0,
    )
    assert [arch.channels_at(r) for r in arch.resolutions] == [
        512,
        512,
        512,
        512,
        256,
        128,
        64,
        32,
        16,
    ]
    assert arch.equalized_lr and arch.pixel_norm.enabled and arch.pixel_norm.latent
    assert arch.pixel_norm.epsilon == 1e-8 and arch.fused_scale
    assert arch.generator.first_block[0].gain == np.sqrt(2) / 4
    assert arch.discriminator.last_block[2].out == 512
    assert (
        "    rule: {base: 8192, max: 512, decay: 1.0}  # fmap_base, fmap_max, fmap_decay\n" in text
    )
    assert "      - {kind: downsample, takes_activation: true}" in text
    spec = load_spec_text(text, "spec.yaml").spec
    assert spec.training.schedule.minibatch == {
        4: 128,
        8: 128,
        16: 128,
        32: 64,
        64: 32,
        128: 16,
        256: 8,
        512: 4,
        1024: 4,
    }
    assert spec.training.schedule.learning_rate == {1024: 0.0015}
    assert (spec.training.schedule.fade_kimg, spec.training.schedule.stable_kimg) == (0, 0)
    assert spec.training.schedule.total_kimg == 600


def test_relu_no_pixelnorm_no_wscale_no_mbstd_and_a_width_table():
    g = SMALL | dict(
        resolution=8,
        fmap_decay=0.0,
        use_leakyrelu=False,
        use_pixelnorm=False,
        normalize_latents=False,
        use_wscale=False,
        pixelnorm_epsilon=1e-4,
    )
    d = SMALL | dict(resolution=8, fmap_decay=0.0, use_wscale=False, mbstd_group_size=1)
    nets = networks(g, d)
    text = spec_text(nets, name="t", source="x.pkl", sha256="0" * 64, table=True)
    arch = load_spec_text(text, "spec.yaml").spec.architecture
    assert arch.channels.table == {4: 32, 8: 32}  # fmap_decay 0: nf = min(64, 32) everywhere
    assert not arch.equalized_lr and not arch.pixel_norm.enabled and not arch.pixel_norm.latent
    assert arch.pixel_norm.epsilon == 1e-4
    assert [layer.activation for layer in arch.generator.first_block] == ["relu", "relu"]
    assert [layer.kind for layer in arch.discriminator.last_block] == ["conv", "dense", "dense"]
    assert nets.G.latent_size == 32  # latent_size None -> nf(0)


def test_lod_names_a_stable_stage_and_the_schedule_resumes_growth_there():
    nets = networks(SMALL | {"resolution": 32}, lod=2.0)
    assert nets.stage_resolution == 8
    spec = compiled(nets).spec
    sched = spec.training.schedule
    assert sched.fade_kimg == {8: 0, 16: 600, 32: 600}
    assert sched.stable_kimg == {4: 0, 8: 600, 16: 600, 32: 600}
    assert sched.total_kimg == 3000


@pytest.mark.parametrize(
    ("g", "d", "message"),
    [
        (
            dict(label_size=1),
            None,
            "G (network 'G', G_paper): static argument label_size=1: the spec language "
            "conditions on 2..65536 classes given as one-hot labels (label_size 0: "
            "unconditional); a single label component (official '-cond1') cannot be imported",
        ),
        (
            dict(use_batchnorm=True),
            None,
            "G (network 'G', G_paper): static argument use_batchnorm=True: batch normalisation is "
            "not in the spec language (and the official TensorFlow G_paper ignores this argument, "
            "so the network would not run as it was trained); cannot import",
        ),
        (
            dict(tanh_at_end=1.0),
            None,
            "static argument tanh_at_end=1.0: a tanh output layer is not",
        ),
        (
            dict(use_gdrop=True),
            None,
            "G (network 'G', G_paper): unknown static argument 'use_gdrop'=True (the official "
            "G_paper takes: dtype, fmap_base, fmap_decay, fmap_max, fused_scale, "
            "is_template_graph, label_size, latent_size, mbstd_group_size, normalize_latents, "
            "num_channels, pixelnorm_epsilon, resolution, structure, tanh_at_end, use_batchnorm, "
            "use_leakyrelu, use_pixelnorm, use_wscale); the pickle may come from modified code, "
            "cannot import",
        ),
        (dict(resolution=48), None, "static argument resolution=48: must be a power of two >= 4"),
        (dict(resolution=2), None, "static argument resolution=2: must be an integer >= 4"),
        (dict(fmap_max=0), None, "static argument fmap_max=0: must be an integer >= 1"),
        (
            dict(fmap_base="8192"),
            None,
            "static argument fmap_base='8192': must be a finite number > 0",
        ),
        (dict(use_wscale=1), None, "static argument use_wscale=1: must be True or False"),
        (
            dict(dtype="float64"),
            None,
            "static argument dtype='float64': must be one of float32, float16",
        ),
        (
            dict(num_channels=5),
            None,
            "num_channels=5: the spec language allows 1..4 image channels",
        ),
        (dict(fmap_decay=-1.0), None, "fmap_decay=-1.0: must be >= 0 (widths must not grow"),
        (
            None,
            dict(mbstd_group_size=300),
            "D (network 'D', D_paper): static argument "
            "mbstd_group_size=300: the spec language allows groups of up to 256",
        ),
        (
            None,
            dict(use_layernorm=True),
            "use_layernorm=True: layer normalisation is not in the spec",
        ),
    ],
    ids=[
        "labels",
        "batchnorm",
        "tanh",
        "unknown",
        "res48",
        "res2",
        "fmap_max",
        "str",
        "flag",
        "dtype",
        "channels",
        "decay",
        "group",
        "layernorm",
    ],
)
def test_refusals_name_the_argument(g, d, message):
    g_kw, d_kw = SMALL | {"resolution": 16} | (g or {}), SMALL | {"resolution": 16} | (d or {})
    with pytest.raises(UserError) as err:
        networks(g_kw, d_kw)
    assert message in str(err.value)
    assert str(err.value).startswith("x.pkl: ")


def test_harmless_theano_arguments_and_ignored_ones_are_accepted():
    g = SMALL | dict(
        resolution=16,
        use_batchnorm=False,
        tanh_at_end=None,
        mbstd_group_size=16,
        structure="linear",
        is_template_graph=False,
        latent_size=np.int64(24),
        fmap_base=np.float64(64.0),
    )
    nets = networks(g, SMALL | dict(resolution=16, use_layernorm=False, mbdisc_kernels=None))
    assert nets.G.latent_size == 24 and isinstance(nets.G.latent_size, int)
    assert nets.G.fmap_base == 64.0


def test_pickle_level_checks(write_pickle):
    base = SMALL | {"resolution": 16}
    cases = [
        (
            (base, base | {"fmap_max": 16}),
            {},
            "G has fmap_max=32 but D has 16; one spec describes both networks with one resolution "
            "and width table",
        ),
        (
            (base, base),
            {"lod": 0.5},
            "lod 0.5: the networks were saved during a fade-in (between two resolutions); only "
            "whole lods 0..2 (stable stages) can be imported. Released final networks have lod 0.",
        ),
        (
            (base, base),
            {"lod": 3.0},
            "lod 3 is outside 0..2, the levels of a 16x16 network (lod 0: 16x16, lod 2: 4x4)",
        ),
    ]
    for (g, d), kw, message in cases:
        path = write_pickle(g, d, **kw)
        with pytest.raises(UserError) as err:
            convert_pickle(path)
        assert str(err.value) == f"{path}: {message}"


def test_gs_must_share_g_arguments_and_lod(write_pickle):
    base = SMALL | {"resolution": 16}
    path = write_pickle(base, base)
    pkl = read_official_pickle(path)
    pkl.Gs.static_kwargs["use_pixelnorm"] = False  # type: ignore[index]
    with pytest.raises(
        UserError,
        match=r"G has use_pixelnorm=True but Gs has False; Gs must be a "
        r"copy of G \(official train.py G.clone\('Gs'\)\)",
    ):
        official_networks(pkl)
    pkl.Gs.static_kwargs["use_pixelnorm"] = True  # type: ignore[index]
    pkl.D.variables["lod"] = np.asarray(np.float32(1.0))  # type: ignore[index]
    with pytest.raises(UserError, match=r"the networks disagree on lod \(G 0, D 1, Gs 0\)"):
        official_networks(pkl)


def test_build_function_must_be_the_papers():
    with pytest.raises(
        UserError,
        match=r"x.pkl: G \(network 'G', G_paper_v2\): build function "
        r"'G_paper_v2' is not supported \(the G network must be the official "
        r"G_paper\)",
    ):
        generator_args(state("G", {}, func="G_paper_v2"), "x.pkl")


def test_names_and_floats():
    assert spec_name("karras2018iclr-celebahq-1024x1024") == "karras2018iclr_celebahq_1024x1024"
    assert spec_name("2018 net") == "imported_2018_net"
    assert spec_name("---") == "imported"
    assert len(spec_name("a" * 100)) == 64
    assert [yaml_float(x) for x in (1e-8, 1.0, 0.3535533905932738, 1e20, 5e-5)] == [
        "1.0e-08",
        "1.0",
        "0.3535533905932738",
        "1.0e+20",
        "5.0e-05",
    ]


GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(
    ("name", "g", "d"),
    [
        ("celebahq_1024", CELEBAHQ, None),
        ("lsun_256_unfused", LSUN, None),
        (
            "relu_plain_lod1",
            SMALL
            | dict(
                resolution=16,
                use_leakyrelu=False,
                use_pixelnorm=False,
                use_wscale=False,
                fmap_decay=0.0,
            ),
            SMALL | dict(resolution=16, use_wscale=False, fmap_decay=0.0, mbstd_group_size=0),
        ),
    ],
)
def test_spec_text_golden(name, g, d):
    """The whole spec text (PROGAN_UPDATE_GOLDEN=1 rewrites tests/pretrained/golden/)."""
    nets = networks(g, d, lod=1.0 if name.endswith("lod1") else 0.0)
    text = spec_text(
        nets,
        name=name,
        source=f"{name}.pkl",
        sha256="0123456789abcdef" * 4,
        table=name.startswith("relu"),
    )
    load_spec_text(text, "spec.yaml")
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("PROGAN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()
