"""The IR's one naming authority, one stage selection, one node description, and spans that
never point at keys the spec does not write."""

from __future__ import annotations

import pytest

from progan_dsl.errors import UserError
from progan_dsl.ir import Role, Stage, compile_graphs, select_stages, stages
from progan_dsl.ir.describe import describe
from progan_dsl.spec import load_spec, load_spec_text
from progan_dsl.spec.names import RESERVED, layer_names
from tests.conftest import SPECS, TINY


@pytest.fixture(scope="module")
def tiny():
    return compile_graphs(load_spec(TINY), fused=False)


def test_reserved_names_are_every_name_the_builder_adds(tiny) -> None:
    spec = tiny.spec
    added: set[str] = set()
    for stage in tiny.stages:
        for net in ("G", "D"):
            for node in tiny.stage_graph(net, stage).nodes():
                if not node.block.startswith("b"):
                    continue  # the input blocks z / img
                arch = spec.architecture
                net_spec = arch.generator if net == "G" else arch.discriminator
                first = net_spec.first_block if net == "G" else net_spec.last_block
                layers = first if node.resolution == arch.base_resolution else net_spec.block
                if node.id.split(".")[2] not in layer_names(layers):
                    added.add(node.id.split(".")[2])
    assert added == set(RESERVED)


def test_select_stages() -> None:
    all_ = stages(load_spec(TINY).spec)
    assert [str(s) for s in all_] == ["4/stable", "8/fade", "8/stable", "16/fade", "16/stable"]
    assert select_stages(all_, None) == all_ == select_stages(all_, "all")
    assert select_stages(all_, 8) == [Stage(8, "fade"), Stage(8, "stable")]
    assert select_stages(all_, " 16 ", "stable") == [Stage(16, "stable")]
    assert select_stages(all_, None, "fade") == [Stage(8, "fade"), Stage(16, "fade")]
    listing = "(stages: 4/stable, 8/fade, 8/stable, 16/fade, 16/stable)"
    for args, message in [
        ((32,), f"no stage 32 in spec 'tiny' {listing}"),
        ((4, "fade"), f"no stage 4/fade in spec 'tiny' {listing}"),
        (
            ("big",),
            "expected a resolution or 'all', got 'big' (resolutions in spec 'tiny': 4, 8, 16)",
        ),
        ((True,), "expected a resolution or 'all', got True"),
        ((8, "fading"), "unknown phase 'fading' (phases: fade, stable)"),
    ]:
        with pytest.raises(UserError) as info:
            select_stages(all_, *args, spec_name="tiny")  # type: ignore[arg-type]
        assert str(info.value).startswith(message), str(info.value)


def test_describe_decides_activation_once(tiny) -> None:
    g = tiny.stage_graph("G", Stage(8, "fade"))
    d = tiny.stage_graph("D", Stage(8, "fade"))
    conv = describe(g.node("G.b8.conv0"))  # 16 -> 12 channels, 3x3, lrelu, pixel norm
    assert (conv.label, conv.activation, conv.nonlinearity, conv.normalize) == (
        "Conv 3x3",
        "lrelu",
        "lrelu",
        True,
    )
    assert (conv.kernel, conv.in_channels, conv.out_channels) == (3, 16, 12)
    assert conv.params == 16 * 12 * 9 + 12
    rgb = describe(g.node("G.b8.torgb"))  # linear toRGB: a weighted layer without activation
    assert (rgb.activation, rgb.nonlinearity, rgb.gain, rgb.params) == (
        "linear",
        "linear",
        1.0,
        12 + 1,
    )
    up = describe(g.node("G.b8.up"))
    assert (up.label, up.activation, up.nonlinearity, up.params, up.gain) == (
        "Upsample",
        None,
        None,
        0,
        None,
    )
    skip = describe(d.node("D.b8.skip_down"))  # a pooling that applies nothing
    assert (skip.activation, skip.nonlinearity) == ("linear", None)
    down = describe(d.node("D.b8.down"))  # the pooling that took over the conv's activation
    assert (down.activation, down.nonlinearity) == ("lrelu", "lrelu")
    mbstd = describe(d.node("D.b4.mbstd"))
    assert (mbstd.label, mbstd.out_shape, mbstd.activation) == (
        "Minibatch stddev",
        (17, 4, 4),
        None,
    )


def test_spans_of_defaults_are_not_written() -> None:
    loaded = load_spec(TINY)  # tiny writes no to_rgb / from_rgb
    graph = compile_graphs(loaded).stage_graph("G", Stage(8, "stable"))
    rgb = graph.node("G.b8.torgb")
    assert rgb.span is not None and not rgb.span.written
    assert rgb.span.line == 11  # the nearest written key: `generator:`
    conv = graph.node("G.b8.conv0")
    assert conv.span is not None and conv.span.written and conv.span.line == 17


def test_odd_kernels_keep_the_shape() -> None:
    text = TINY.read_text().replace(
        "      - {kind: upsample}\n      - {kind: conv}",
        "      - {kind: upsample}\n      - {kind: conv, kernel: 5}",
    )
    compiled = compile_graphs(load_spec_text(text))
    g = compiled.stage_graph("G", compiled.stages[-1])
    assert g.node("G.b16.conv0").out_shape == (8, 16, 16)
    assert g.node("G.b16.conv0").kind == "conv"  # 5x5 is not fused
    assert g.sinks()[0].out_shape == (1, 16, 16)


def test_block_roles_unchanged_for_the_paper_spec() -> None:
    compiled = compile_graphs(load_spec(SPECS / "celebahq_1024.yaml"))
    d = compiled.stage_graph("D", Stage(1024, "stable"))
    assert d.node("D.b1024.conv1").role == Role.BLOCK and d.sinks()[0].out_shape == (1,)
