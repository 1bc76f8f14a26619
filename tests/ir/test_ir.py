"""Block-graph IR: parameter counts derived by hand, verification, stable names, dumps."""

from __future__ import annotations

import pytest

from progan_dsl.ir import Role, Stage, compile_graphs, param_count
from progan_dsl.ir.dump import dump
from progan_dsl.ir.passes import verify
from progan_dsl.ir.table import format_table
from progan_dsl.spec import load_spec, load_spec_text
from tests.conftest import SPECS, TINY, check_golden

# Table 2 channel widths, written out by hand (not from the code under test).
WIDTH = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def conv(i: int, o: int, k: int = 3) -> int:
    return i * o * k * k + o  # weights + one bias per output channel


def g_params(res: int, phase: str) -> int:
    total = 512 * 512 * 16 + 512 + conv(512, 512)  # 4x4: "Conv 4x4" (dense) + Conv 3x3
    r = 8
    while r <= res:
        total += conv(WIDTH[r // 2], WIDTH[r]) + conv(WIDTH[r], WIDTH[r])
        r *= 2
    total += conv(WIDTH[res], 3, 1)  # toRGB
    if phase == "fade":
        total += conv(WIDTH[res // 2], 3, 1)  # the old toRGB on the skip path
    return total


def d_params(res: int, phase: str) -> int:
    total = conv(3, WIDTH[res], 1)  # fromRGB
    r = res
    while r >= 8:
        total += conv(WIDTH[r], WIDTH[r]) + conv(WIDTH[r], WIDTH[r // 2])
        r //= 2
    total += conv(513, 512) + 512 * 16 * 512 + 512 + 512 + 1  # 4x4: mbstd conv, "Conv 4x4", FC
    if phase == "fade":
        total += conv(3, WIDTH[res // 2], 1)
    return total


@pytest.fixture(scope="module")
def celeb():
    return load_spec(SPECS / "celebahq_1024.yaml")


def test_hand_counts_match_the_paper():
    assert g_params(1024, "stable") == 23_071_507
    assert d_params(1024, "stable") == 23_077_137


@pytest.mark.parametrize("fused", [False, True])
def test_every_stage_parameter_count(celeb, fused):
    compiled = compile_graphs(celeb, fused=fused)
    assert len(compiled.stages) == 17
    for stage in compiled.stages:
        assert param_count(compiled.stage_graph("G", stage)) == g_params(
            stage.resolution, stage.phase
        )
        assert param_count(compiled.stage_graph("D", stage)) == d_params(
            stage.resolution, stage.phase
        )


def test_every_stage_verifies_and_has_one_lerp_in_fade(celeb):
    compiled = compile_graphs(celeb)
    for stage in compiled.stages:
        for net in ("G", "D"):
            graph = verify(compiled.stage_graph(net, stage))
            lerps = [n for n in graph.nodes() if n.kind == "lerp"]
            assert len(lerps) == (1 if stage.phase == "fade" else 0)


def test_fusion_keeps_parameter_names(celeb):
    plain, fused = compile_graphs(celeb, fused=False), compile_graphs(celeb, fused=True)
    stage = plain.stages[-1]
    for net in ("G", "D"):

        def names(compiled, net=net):
            return {
                n.id for n in compiled.stage_graph(net, stage).nodes() if n.kind.startswith("conv")
            }

        assert names(plain) == names(fused)
    kinds = {n.kind for n in fused.stage_graph("G", stage).nodes()}
    assert "conv_up" in kinds and "upsample" not in kinds
    kinds = {n.kind for n in fused.stage_graph("D", stage).nodes()}
    assert "conv_down" in kinds and "downsample" not in kinds


def test_output_shapes_of_final_stage(celeb):
    compiled = compile_graphs(celeb)
    g = compiled.stage_graph("G", compiled.stages[-1])
    d = compiled.stage_graph("D", compiled.stages[-1])
    assert g.sinks()[0].out_shape == (3, 1024, 1024)
    assert d.sinks()[0].out_shape == (1,)
    assert g.node("G.b64.conv1").out_shape == (256, 64, 64)
    assert d.node("D.b4.mbstd").out_shape == (513, 4, 4)


def test_fade_stage_structure(celeb):
    compiled = compile_graphs(celeb)
    g = compiled.stage_graph("G", Stage(64, "fade"))
    lerp = g.node("G.b64.fade")
    preds = {kind.value: node.id for node, kind in g.preds(lerp.id)}
    assert preds == {"fade_new": "G.b64.torgb", "fade_skip": "G.b64.skip_up"}
    assert g.preds("G.b64.skip_up")[0][0].id == "G.b32.torgb"
    d = compiled.stage_graph("D", Stage(64, "fade"))
    preds = {kind.value: node.id for node, kind in d.preds("D.b64.fade")}
    assert preds == {"fade_new": "D.b64.conv1", "fade_skip": "D.b32.fromrgb"}
    assert [n.id for n, _ in d.succs("D.b64.fade")] == ["D.b32.conv0"]


def test_non_square_base_shape():
    text = TINY.read_text().replace(
        "  final_resolution: 16", "  base_shape: [4, 8]\n  final_resolution: 32"
    )
    text = text.replace("{4: 16, 8: 12, 16: 8}", "{8: 16, 16: 12, 32: 8}")
    text = text.replace("{4: 16, 8: 16, 16: 8}", "{8: 16, 16: 16, 32: 8}")
    compiled = compile_graphs(load_spec_text(text, "wide.yaml"))
    assert [s.resolution for s in compiled.stages] == [8, 16, 16, 32, 32]
    g = compiled.stage_graph("G", compiled.stages[-1])
    assert g.sinks()[0].out_shape == (1, 16, 32)
    assert g.node("G.b8.project").out_shape == (16, 4, 8)
    d = compiled.stage_graph("D", compiled.stages[-1])
    assert d.node("D.b8.dense0").in_shape == (16, 4, 8)


def test_node_spans_point_into_the_spec(celeb):
    compiled = compile_graphs(celeb)
    node = compiled.stage_graph("D", Stage(8, "stable")).node("D.b4.mbstd")
    lines = celeb.doc.text.splitlines()
    assert "minibatch_stddev" in lines[node.span.line - 1]
    assert node.role == Role.BLOCK


def test_dump_golden_tiny():
    check_golden("ir/tiny.txt", dump(compile_graphs(load_spec(TINY))))


def test_dump_golden_celebahq(celeb):
    check_golden("ir/celebahq_1024.txt", dump(compile_graphs(celeb)))


def test_table_golden_celebahq(celeb):
    compiled = compile_graphs(celeb, fused=False)
    stage = compiled.stages[-1]
    text = (
        format_table(compiled.stage_graph("G", stage))
        + "\n"
        + format_table(compiled.stage_graph("D", stage))
    )
    assert "23,071,507" in text and "23,077,137" in text
    check_golden("ir/celebahq_1024_table.txt", text)


def test_a_conv_between_an_upsample_and_a_downsample_is_fused_once():
    """upsample -> conv -> downsample: the conv fuses with the upsample (conv_up) and the
    downsample stays; fusing it a second time from the original conv would drop the upsample.
    Fused and plain networks compute the same scores."""
    import torch

    from progan_dsl.compiler import compile_spec
    from progan_dsl.spec import load_spec_text

    text = TINY.read_text().replace(
        "      - {kind: conv}\n      - {kind: conv, out: lower}\n      - {kind: downsample}\n",
        "      - {kind: conv}\n      - {kind: upsample}\n      - {kind: conv, out: lower}\n"
        "      - {kind: downsample}\n      - {kind: downsample}\n",
    )
    loaded = load_spec_text(text, "up_down.yaml")
    fused, plain = compile_spec(loaded, fused=True), compile_spec(loaded, fused=False)
    stage = fused.final_stage
    kinds = [n.kind for n in fused.graph("D", stage).nodes() if n.id.startswith("D.b16.")]
    assert kinds[:5] == ["conv", "conv", "conv_up", "downsample", "downsample"]  # fromrgb first
    torch.manual_seed(0)
    D_plain = plain.build("D", stage).eval()
    D_fused = fused.build("D", stage).eval()
    D_fused.load_state_dict(D_plain.state_dict())
    x = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(D_fused(x), D_plain(x), rtol=1e-4, atol=1e-5)
