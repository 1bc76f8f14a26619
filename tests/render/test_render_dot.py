"""DOT text of the diagrams (no `dot` program needed): golden files for the tiny spec, and the
properties a reader relies on, checked on a small DOT parser written here (not the code under
test): node ids are the IR ids, labels carry the parameter counts, fade edges are dashed and
labelled, the new block is highlighted, styles come from the kind registry.

Regenerate the golden files with `PROGAN_UPDATE_GOLDEN=1 pytest tests/render`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import progan_dsl
from progan_dsl.compiler import Program, compile_spec
from progan_dsl.ir import Stage
from progan_dsl.kinds import get_kind
from progan_dsl.render import overview_dot, stage_basename, stage_dot

REPO = Path(progan_dsl.__file__).resolve().parents[1]
TINY = REPO / "tests" / "specs" / "tiny.yaml"
GOLDEN = REPO / "tests" / "golden" / "render"
UPDATE = os.environ.get("PROGAN_UPDATE_GOLDEN") == "1"

TINY_STAGES = ["4_stable", "8_fade", "8_stable", "16_fade", "16_stable"]
ORANGE = "#d9480f"


# ---- a small DOT reader (the subset the graphviz package writes) -------------------------------

QUOTED = r'"(?:[^"\\]|\\.)*"'
ATTR = re.compile(rf"(\w+)=({QUOTED}|[^\s\]]+)")
# `id [attrs]` or `id -> id [attrs]` (edge attributes optional), ids quoted or bare
STMT = re.compile(
    rf'^\s*({QUOTED}|[\w.]+)(?: -> ({QUOTED}|[\w.]+)(?: \[((?:{QUOTED}|[^\]"])*)\])?'
    rf'|(?: \[((?:{QUOTED}|[^\]"])*)\]))$',
    re.MULTILINE,
)


def _unquote(s: str) -> str:
    return s[1:-1].replace('\\"', '"') if s.startswith('"') else s


def _attrs(text: str) -> dict[str, str]:
    return {k: _unquote(v) for k, v in ATTR.findall(text)}


@dataclass
class Cluster:
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)


@dataclass
class Dot:
    nodes: dict[str, dict[str, str]]
    edges: dict[tuple[str, str], dict[str, str]]
    clusters: dict[str, Cluster]


def parse(text: str) -> Dot:
    nodes: dict[str, dict[str, str]] = {}
    edges: dict[tuple[str, str], dict[str, str]] = {}
    for m in STMT.finditer(text):
        src, dst, attrs = _unquote(m.group(1)), m.group(2), _attrs(m.group(3) or m.group(4) or "")
        if dst is None:
            if src not in ("node", "edge", "graph"):
                nodes.setdefault(src, {}).update(attrs)
        else:
            edges[(src, _unquote(dst))] = attrs
    clusters: dict[str, Cluster] = {}
    stack: list[Cluster] = []
    for line in text.splitlines():
        head = re.match(r"\s*subgraph (\w+) \{", line)
        if head:
            stack.append(Cluster(head.group(1)))
            clusters[head.group(1)] = stack[-1]
        elif line.strip() == "}":
            if stack:
                stack.pop()
        elif stack and not stack[-1].nodes and re.match(r"\s*\w+=", line):
            stack[-1].attrs.update(_attrs(line))
        elif stack:
            node = re.match(rf"\s*({QUOTED}) \[", line)
            if node:
                for c in stack:
                    c.nodes.append(_unquote(node.group(1)))
    return Dot(nodes, edges, clusters)


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Program:
    return compile_spec(TINY)


def _stage(name: str) -> Stage:
    res, phase = name.split("_")
    return Stage(int(res), phase)  # type: ignore[arg-type]


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with PROGAN_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


# ---- golden files -------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", TINY_STAGES)
def test_stage_dot_matches_golden(tiny: Program, stage: str) -> None:
    st = _stage(stage)
    _check_golden(f"tiny_{stage_basename(st)}.dot", stage_dot(tiny, st))


def test_overview_dot_matches_golden(tiny: Program) -> None:
    _check_golden("tiny_overview.dot", overview_dot(tiny))


def test_dot_is_deterministic_across_compiles(tiny: Program) -> None:
    again = compile_spec(TINY)
    st = Stage(16, "fade")
    assert stage_dot(again, st) == stage_dot(tiny, st)
    assert overview_dot(again) == overview_dot(tiny)


# ---- stage diagrams -----------------------------------------------------------------------------


def test_node_ids_are_the_ir_ids(tiny: Program) -> None:
    st = Stage(8, "fade")
    dot = parse(stage_dot(tiny, st))
    expected = {
        "G.z.latent",
        "G.z.norm",
        "G.b4.project",
        "G.b4.conv",
        "G.b4.torgb",
        "G.b8.conv0",
        "G.b8.conv1",
        "G.b8.torgb",
        "G.b8.skip_up",
        "G.b8.fade",
        "D.img.image",
        "D.b8.fromrgb",
        "D.b8.skip_down",
        "D.b8.conv0",
        "D.b8.conv1",
        "D.b8.fade",
        "D.b4.fromrgb",
        "D.b4.mbstd",
        "D.b4.conv",
        "D.b4.dense0",
        "D.b4.dense1",
    }
    assert set(dot.nodes) == expected
    ir_edges = {(s, d) for net in "GD" for s, d, _ in tiny.graph(net, st).edges()}
    assert set(dot.edges) == ir_edges


def test_clusters_per_network_and_resolution(tiny: Program) -> None:
    dot = parse(stage_dot(tiny, Stage(16, "stable")))
    assert set(dot.clusters) == {
        "cluster_G",
        "cluster_D",
        "cluster_G_b4",
        "cluster_G_b8",
        "cluster_G_b16",
        "cluster_D_b4",
        "cluster_D_b8",
        "cluster_D_b16",
    }
    assert dot.clusters["cluster_G_b16"].attrs["label"] == "16x16 block"
    assert dot.clusters["cluster_D_b4"].attrs["label"] == "4x4 block"
    # G.b16: fused upsample+conv, conv, toRGB; every G node sits in cluster_G
    assert dot.clusters["cluster_G_b16"].nodes == ["G.b16.conv0", "G.b16.conv1", "G.b16.torgb"]
    assert set(dot.clusters["cluster_G"].nodes) == {n for n in dot.nodes if n.startswith("G.")}
    assert set(dot.clusters["cluster_D"].nodes) == {n for n in dot.nodes if n.startswith("D.")}
    assert (
        dot.clusters["cluster_G"].attrs["label"]
        == f"Generator (G): {tiny.params('G', Stage(16, 'stable')):,} params"
    )


def test_labels_carry_kind_activation_shape_and_params(tiny: Program) -> None:
    dot = parse(stage_dot(tiny, Stage(8, "fade")))
    label = {n: a["label"] for n, a in dot.nodes.items()}
    # hand-derived: project 16 -> 16x4x4 plus one bias per channel; fused 3x3 conv 16 -> 12 channels
    assert label["G.b4.project"] == "Conv 4x4 · lrelu · pixel norm\n[16, 4, 4]\n4,112 params"
    assert (
        label["G.b8.conv0"] == "Upsample + Conv 3x3 · lrelu · pixel norm\n[12, 8, 8]\n1,740 params"
    )
    assert label["G.b8.torgb"] == "Conv 1x1 · linear\n[1, 8, 8]\n13 params"
    assert label["G.b8.skip_up"] == "Upsample\n[1, 8, 8]\n0 params"
    assert label["D.b8.conv1"] == "Conv 3x3 + Downsample · lrelu\n[16, 4, 4]\n1,744 params"
    assert label["D.b4.mbstd"] == "Minibatch stddev\n[17, 4, 4]\n0 params"
    assert label["D.b4.dense0"] == "Conv 4x4 · lrelu\n[16]\n4,112 params"  # 16*4*4*16 + 16
    assert label["D.b4.dense1"] == "Fully-connected · linear\n[1]\n17 params"


@pytest.mark.parametrize("stage", TINY_STAGES)
def test_every_label_has_the_registry_param_count(tiny: Program, stage: str) -> None:
    st = _stage(stage)
    dot = parse(stage_dot(tiny, st))
    for net in "GD":
        graph = tiny.graph(net, st)
        total = 0
        for node in graph.nodes():
            count = get_kind(node.kind).count(node.facts())
            lines = dot.nodes[node.id]["label"].split("\n")
            assert lines[2] == f"{count:,} params", node.id
            assert lines[1] == str(list(node.out_shape or ())), node.id
            total += int(lines[2].split()[0].replace(",", ""))
        assert total == tiny.params(net, st)


def test_node_style_comes_from_the_kind_registry(tiny: Program) -> None:
    st = Stage(16, "fade")
    dot = parse(stage_dot(tiny, st))
    for net in "GD":
        for node in tiny.graph(net, st).nodes():
            attrs = dot.nodes[node.id]
            for key, value in get_kind(node.kind).style.items():
                assert attrs[key] == value, (node.id, key)
            assert "filled" in attrs["style"].split(",")
    assert dot.nodes["D.b4.mbstd"]["shape"] == "hexagon"
    assert dot.nodes["G.b16.fade"]["shape"] == "circle"


@pytest.mark.parametrize("res", [8, 16])
def test_fade_edges_are_dashed_and_labelled(tiny: Program, res: int) -> None:
    low = res // 2
    dot = parse(stage_dot(tiny, Stage(res, "fade")))
    expected = {
        (f"G.b{res}.torgb", f"G.b{res}.fade"): "alpha",  # new block's RGB
        (f"G.b{res}.skip_up", f"G.b{res}.fade"): "1 - alpha",  # upsampled old RGB
        (f"D.b{res}.conv1", f"D.b{res}.fade"): "alpha",  # new block's output
        (f"D.b{low}.fromrgb", f"D.b{res}.fade"): "1 - alpha",  # downsampled image, old fromRGB
    }
    dashed = {e: a for e, a in dot.edges.items() if a.get("style") == "dashed"}
    assert {e: a["label"] for e, a in dashed.items()} == expected
    for attrs in dashed.values():
        assert attrs["color"] == ORANGE
    for edge, attrs in dot.edges.items():
        if edge not in expected:
            assert "label" not in attrs and "style" not in attrs, edge


def test_stable_stage_has_no_fade_edges_and_no_highlight(tiny: Program) -> None:
    dot = parse(stage_dot(tiny, Stage(16, "stable")))
    assert all("style" not in a for a in dot.edges.values())
    assert not any("bold" in c.attrs.get("style", "") for c in dot.clusters.values())


def test_new_block_is_highlighted(tiny: Program) -> None:
    dot = parse(stage_dot(tiny, Stage(16, "fade")))
    highlighted = {n for n, c in dot.clusters.items() if "bold" in c.attrs.get("style", "")}
    assert highlighted == {"cluster_G_b16", "cluster_D_b16"}
    new = dot.clusters["cluster_G_b16"].attrs
    assert new["label"] == "16x16 block (new: fading in)"
    assert new["color"] == ORANGE and new["fillcolor"] == "#fff4e6"
    old = dot.clusters["cluster_G_b8"].attrs
    assert old["label"] == "8x8 block" and old["fillcolor"] != new["fillcolor"]
    # the old resolution's RGB layer stays in its own (old) block
    assert "G.b8.torgb" in dot.clusters["cluster_G_b8"].nodes
    assert "D.b8.fromrgb" in dot.clusters["cluster_D_b8"].nodes


def test_1024_final_stage_totals_match_table_2() -> None:
    prog = compile_spec(REPO / "specs" / "celebahq_1024.yaml")
    dot = parse(stage_dot(prog, Stage(1024, "stable")))
    assert dot.clusters["cluster_G"].attrs["label"] == "Generator (G): 23,071,507 params"
    assert dot.clusters["cluster_D"].attrs["label"] == "Discriminator (D): 23,077,137 params"
    # Table 2: the 4x4 "Conv 4x4" of G is 512 * 512*4*4 weights + 512 biases
    assert dot.nodes["G.b4.project"]["label"].endswith("\n[512, 4, 4]\n4,194,816 params")


# ---- overview sheet -----------------------------------------------------------------------------


def test_overview_has_one_row_per_stage_with_its_blocks(tiny: Program) -> None:
    dot = parse(overview_dot(tiny))
    for stage in TINY_STAGES:
        res = int(stage.split("_")[0])
        blocks = sorted(
            int(n.rsplit(".b", 1)[1]) for n in dot.nodes if n.startswith(f"{stage}.G.b")
        )
        assert blocks == [r for r in (4, 8, 16) if r <= res], stage
        d_blocks = sorted(
            int(n.rsplit(".b", 1)[1]) for n in dot.nodes if n.startswith(f"{stage}.D.b")
        )
        assert d_blocks == blocks
    assert (
        dot.nodes["16_stable.G.b16"]["label"] == "G 16x16\n8 ch\n1.5k"
    )  # 12*8*9+8 + 8*8*9+8 = 1,456
    assert dot.nodes["8_fade.stage"]["label"] == "8x8 fade-in\nG 9.5k · D 9.7k"


def test_overview_columns_line_up_by_resolution(tiny: Program) -> None:
    dot = parse(overview_dot(tiny))
    # 3 resolutions: the image sits 1 + 3 columns after the latent in every row, so a row with k
    # blocks bridges 4 - k columns before and after the image
    for stage, k in [("4_stable", 1), ("8_fade", 2), ("16_stable", 3)]:
        last_g = f"{stage}.G.b{4 << (k - 1)}"
        first_d = f"{stage}.D.b{4 << (k - 1)}"
        assert dot.edges[(last_g, f"{stage}.image")]["minlen"] == str(4 - k)
        assert dot.edges[(f"{stage}.image", first_d)]["minlen"] == str(4 - k)


def test_overview_marks_the_fading_block_and_both_paths(tiny: Program) -> None:
    dot = parse(overview_dot(tiny))
    faded = {n for n, a in dot.nodes.items() if a.get("color") == ORANGE}
    assert faded == {"8_fade.G.b8", "8_fade.D.b8", "16_fade.G.b16", "16_fade.D.b16"}
    fade_edges = {e: a["label"] for e, a in dot.edges.items() if a.get("style") == "dashed"}
    assert fade_edges == {
        ("8_fade.G.b8", "8_fade.image"): "alpha",
        ("8_fade.G.b4", "8_fade.image"): "1 - alpha",
        ("8_fade.D.b8", "8_fade.D.b4"): "alpha",
        ("8_fade.image", "8_fade.D.b4"): "1 - alpha",
        ("16_fade.G.b16", "16_fade.image"): "alpha",
        ("16_fade.G.b8", "16_fade.image"): "1 - alpha",
        ("16_fade.D.b16", "16_fade.D.b8"): "alpha",
        ("16_fade.image", "16_fade.D.b8"): "1 - alpha",
    }
