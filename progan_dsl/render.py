"""Diagrams of compiled programs (`progan-compile SPEC --render DIR`).

Owns the picture side of the pipeline: block graphs -> DOT text (built with the `graphviz`
package) -> svg/png/pdf (the graphviz `dot` program) -> an `index.html` that shows them all.

- One diagram per stage and phase (`stage_0064_fade.svg`): G and D as two top-level clusters side
  by side, both flowing top to bottom, one sub-cluster per resolution block. Every node reads
  "kind label · activation / output shape / parameter count"; fade-in edges are dashed and labelled
  `alpha` (the new block's path) and `1 - alpha` (the old resolution's path); in a fade stage the
  new block's cluster is highlighted.
- One overview sheet (`overview.svg`) of the whole growth in the spirit of the paper's Figure 1:
  a row per stage, G's blocks growing from the left towards the image, D's mirrored on the right.
  Columns are aligned by resolution, so a block stays in its column from the stage it appears in.

Node ids in the stage diagrams are the IR ids; colours and shapes come from each layer kind's
`style` in the kind registry, so a new kind brings its own look. The DOT text is deterministic
(topological node order, sorted edges, no timestamps): it is a golden file in the tests.

The output folder follows the rule of every command (`fsutil.plan_output_dir`, kind
`OUTPUT_KIND`): never into a folder holding anything but an earlier render, which only `force`
replaces; the folder is published whole.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import graphviz

from progan_dsl.errors import UserError
from progan_dsl.fsutil import plan_output_dir, staged_dir, translate_write_errors
from progan_dsl.ir import BlockGraph, EdgeKind, Node, Role, Stage, param_count, select_stages
from progan_dsl.ir.describe import describe
from progan_dsl.kinds import get_kind

if TYPE_CHECKING:
    from progan_dsl.compiler import Program

FORMATS = ("svg", "png", "pdf", "dot")
OUTPUT_KIND = "progan-compile --render"  # the marker's kind: what `force` may replace
NETS = ("G", "D")
NET_TITLES = {"G": "Generator (G)", "D": "Discriminator (D)"}

# Raster resolution of PNG output, passed as `-Gdpi` on the command line only: graphviz 2.43
# scales SVG content by dpi/72 without growing the viewBox (the picture gets cut off), so the
# DOT text itself keeps the default 72.
PNG_DPI = 96

FONT = "Helvetica"
FADE_COLOR = "#d9480f"  # fade-in edges and the new block, in both kinds of diagram
FADE_LABELS = {EdgeKind.FADE_NEW: "alpha", EdgeKind.FADE_SKIP: "1 - alpha"}
FADE_EDGE = {"style": "dashed", "color": FADE_COLOR, "fontcolor": FADE_COLOR, "penwidth": "1.8"}
NEW_BLOCK = {
    "fillcolor": "#fff4e6",
    "color": FADE_COLOR,
    "fontcolor": FADE_COLOR,
    "penwidth": "2.5",
}
OLD_BLOCK = {"fillcolor": "#f8f9fa", "color": "#adb5bd", "penwidth": "1"}
NET_CLUSTER = {"labeljust": "l", "fontsize": "16", "color": "#495057", "style": "rounded"}
BLOCK_CLUSTER = {"labeljust": "l", "fontsize": "12"}
TITLE = {"labelloc": "t", "labeljust": "l", "fontname": FONT, "newrank": "true"}
EDGE = {"fontname": FONT, "color": "#343a40"}
OVERVIEW_FILL = {"G": "#cfe2ff", "D": "#e2d9f3"}

INSTALL_HINT = (
    "the graphviz 'dot' program is needed to render {fmt}, but it was not found on PATH. "
    "Install graphviz (Debian/Ubuntu: 'apt-get install graphviz'; macOS: 'brew install graphviz'; "
    "conda: 'conda install -c conda-forge graphviz'), or use '--format dot' to write only the "
    "DOT files."
)


# ---- labels -------------------------------------------------------------------------------------


def node_params(node: Node) -> int:
    """Trainable parameters of one node, as the kind registry counts them."""
    return describe(node).params


def node_label(node: Node) -> str:
    """Three lines: "Conv 3x3 · lrelu · pixel norm", "[256, 64, 64]", "590,080 params"."""
    desc = describe(node)
    head = desc.label
    if desc.nonlinearity is not None:  # a plain resampling shows no "linear"
        head += f" · {desc.nonlinearity}"
    if desc.normalize:
        head += " · pixel norm"
    shape = "[" + ", ".join(str(s) for s in desc.out_shape) + "]"
    return f"{head}\n{shape}\n{desc.params:,} params"


def block_title(program: Program, resolution: int) -> str:
    h, w = program.spec.architecture.spatial(resolution)
    return f"{h}x{w}"


def compact_count(n: int) -> str:
    """4,719,616 -> '4.72M', 2,320 -> '2.3k' (overview sheet only; stage diagrams print exact)."""
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def stage_title(program: Program, stage: Stage) -> str:
    """'64x64 fade-in', '64x64 stable' (H x W of the stage's images)."""
    phase = "fade-in" if stage.phase == "fade" else "stable"
    return f"{block_title(program, stage.resolution)} {phase}"


def _header(program: Program) -> str:
    """The DOT file's first line: which spec (and which version of it) the picture shows."""
    tag = "fused" if program.fused else "plain"
    return (
        f"{program.spec.name} (spec sha256 {program.loaded.hash[:12]}, {tag} scaling layers); "
        "drawn by progan_dsl.render"
    )


def stage_basename(stage: Stage) -> str:
    return f"stage_{stage.resolution:04d}_{stage.phase}"


# ---- one stage ----------------------------------------------------------------------------------


def _resolution_of_block(block: str) -> int | None:
    """'b64' -> 64; the input blocks ('z', 'img') belong to no resolution."""
    return int(block[1:]) if block.startswith("b") and block[1:].isdigit() else None


def _net_cluster(program: Program, net: str, stage: Stage, graph: BlockGraph) -> graphviz.Digraph:
    new_res = stage.resolution if stage.phase == "fade" else None
    cluster = graphviz.Digraph(name=f"cluster_{net}")
    cluster.attr(label=f"{NET_TITLES[net]}: {param_count(graph):,} params", **NET_CLUSTER)
    blocks: dict[str, list[Node]] = {}
    for node in graph.nodes():  # blocks in the order data reaches them
        blocks.setdefault(node.block, []).append(node)
    for block, members in blocks.items():
        res = _resolution_of_block(block)
        if res is None:
            for node in members:
                _add_node(cluster, node)
            continue
        sub = graphviz.Digraph(name=f"cluster_{net}_{block}")
        label = f"{block_title(program, res)} block"
        if res == new_res:
            sub.attr(
                label=f"{label} (new: fading in)", style="filled,bold", **NEW_BLOCK, **BLOCK_CLUSTER
            )
        else:
            sub.attr(label=label, style="filled", **OLD_BLOCK, **BLOCK_CLUSTER)
        for node in members:
            _add_node(sub, node)
        cluster.subgraph(sub)
    for src, dst, kind in graph.edges():
        if kind == EdgeKind.DATA:
            cluster.edge(src, dst)
        else:
            cluster.edge(src, dst, label=FADE_LABELS[kind], **FADE_EDGE)
    return cluster


def _add_node(dot: graphviz.Digraph, node: Node) -> None:
    style = dict(get_kind(node.kind).style)
    fill = "filled" if "fillcolor" in style else ""
    style["style"] = ",".join(s for s in (style.get("style", ""), fill) if s)
    dot.node(node.id, label=node_label(node), tooltip=node.id, **dict(sorted(style.items())))


def stage_dot(program: Program, stage: Stage) -> str:
    """DOT text of one stage: G and D side by side, one cluster per resolution block."""
    sched = program.spec.training.schedule
    kimg = sched.kimg(stage.phase, stage.resolution)
    title = f"{program.spec.name}: stage {stage_title(program, stage)} ({kimg:g} kimg)"
    if stage.phase == "fade":
        title += "; alpha rises linearly from 0 to 1 over the phase"
    dot = graphviz.Digraph(name=stage_basename(stage), comment=_header(program))
    dot.attr(label=title, fontsize="18", rankdir="TB", nodesep="0.25", ranksep="0.3", **TITLE)
    dot.attr("node", fontname=FONT, fontsize="11", margin="0.08,0.04")
    dot.attr("edge", fontsize="10", arrowsize="0.7", **EDGE)
    for net in NETS:
        dot.subgraph(_net_cluster(program, net, stage, program.graph(net, stage)))
    return dot.source


# ---- overview sheet -----------------------------------------------------------------------------


def _block_params(graph: BlockGraph, resolution: int) -> int:
    """Parameters of a resolution block's own layers (its RGB layer and fade path not included)."""
    return sum(
        node_params(n) for n in graph.nodes() if n.resolution == resolution and n.role == Role.BLOCK
    )


def overview_dot(program: Program) -> str:
    """DOT text of the growth overview: one row per stage, columns aligned by resolution."""
    arch = program.spec.architecture
    res_list = arch.resolutions
    n = len(res_list)
    # columns: stage, latent, G blocks (n), image, D blocks (n), score; a row with fewer blocks
    # bridges the empty columns with `minlen`, so the image and each block keep their column
    first, last = block_title(program, res_list[0]), block_title(program, res_list[-1])
    dot = graphviz.Digraph(name="overview", comment=_header(program))
    title = (
        f"{program.spec.name}: progressive growing from {first} to {last} ({len(program.stages)} "
        r"stages), one row per stage; blocks show channels and parameters.\lOrange: the block "
        r"being faded in; dashed: the fade-in paths, weighted alpha (new block) and 1 - alpha "
        r"(old resolution).\l"
    )
    dot.attr(label=title, fontsize="16", rankdir="LR", nodesep="0.12", ranksep="0.3", **TITLE)
    dot.attr("node", fontname=FONT, fontsize="11", shape="box", style="filled,rounded",
             width="0.95", height="0.5", margin="0.05,0.03")  # fmt: skip
    dot.attr("edge", fontsize="9", arrowsize="0.6", **EDGE)
    row_heads: list[str] = []
    for stage in program.stages:
        key = stage.name
        grown = [r for r in res_list if r <= stage.resolution]
        new = stage.resolution if stage.phase == "fade" else None
        g_graph, d_graph = program.graph("G", stage), program.graph("D", stage)
        head = f"{key}.stage"
        row_heads.append(head)
        totals = (
            f"G {compact_count(param_count(g_graph))} · D {compact_count(param_count(d_graph))}"
        )
        dot.node(
            head, label=f"{stage_title(program, stage)}\n{totals}", shape="plaintext", style=""
        )
        dot.node(f"{key}.latent", label=f"latent\n{arch.latent_size}", fillcolor="#ffffff")
        h, w = arch.spatial(stage.resolution)
        image = f"image\n{arch.image_channels}x{h}x{w}"
        dot.node(f"{key}.image", label=image, fillcolor="#ffffff", style="filled,bold")
        dot.node(f"{key}.score", label="score", fillcolor="#ffffff")
        for net, graph in (("G", g_graph), ("D", d_graph)):
            for r in grown:
                look = NEW_BLOCK if r == new else {"fillcolor": OVERVIEW_FILL[net]}
                params = compact_count(_block_params(graph, r))
                label = f"{net} {block_title(program, r)}\n{arch.channels_at(r)} ch\n{params}"
                dot.node(f"{key}.{net}.b{r}", label=label, **look)
        gap = str(n + 1 - len(grown))  # empty columns between the last block and the image
        dot.edge(head, f"{key}.latent", style="invis")
        chain_g = [f"{key}.latent"] + [f"{key}.G.b{r}" for r in grown]
        chain_d = [f"{key}.D.b{r}" for r in reversed(grown)] + [f"{key}.score"]
        for a, b in zip(chain_g, chain_g[1:], strict=False):
            dot.edge(a, b)
        if new is None:
            dot.edge(chain_g[-1], f"{key}.image", minlen=gap)
        else:
            dot.edge(chain_g[-1], f"{key}.image", minlen=gap, label="alpha", **FADE_EDGE)
            old_g = f"{key}.G.b{new // 2}"
            dot.edge(old_g, f"{key}.image", label="1 - alpha", constraint="false", **FADE_EDGE)
        dot.edge(f"{key}.image", chain_d[0], minlen=gap)
        for a, b in zip(chain_d, chain_d[1:], strict=False):
            if new is not None and a == f"{key}.D.b{new}":
                dot.edge(a, b, label="alpha", **FADE_EDGE)
            else:
                dot.edge(a, b)
        if new is not None:
            old_d = f"{key}.D.b{new // 2}"
            dot.edge(f"{key}.image", old_d, label="1 - alpha", constraint="false", **FADE_EDGE)
    with dot.subgraph(name="stage_column") as col:  # keep the rows in training order
        col.attr(rank="same")
        for head in row_heads:
            col.node(head)
        for a, b in zip(row_heads, row_heads[1:], strict=False):
            col.edge(a, b, style="invis")
    return dot.source


# ---- files --------------------------------------------------------------------------------------


def chosen_stages(program: Program, stages: str | int | Sequence[Stage]) -> list[Stage]:
    """'all', a resolution (both of its phases) or an explicit list of stages, in training order;
    unknown ones raise `ir.select_stages`'s one error text."""
    name = program.spec.name
    if isinstance(stages, (str, int)):
        return select_stages(program.stages, stages, spec_name=name)
    wanted = set(stages)
    for st in sorted(wanted):
        select_stages(program.stages, st.resolution, st.phase, spec_name=name)
    return [s for s in program.stages if s in wanted]


def dot_program() -> str:
    """Path of the graphviz `dot` executable, or a UserError that says how to install it."""
    exe = shutil.which("dot")
    if exe is None:
        raise UserError(INSTALL_HINT.format(fmt="images"))
    return exe


def _run_dot(exe: str, src: Path, out: Path, fmt: str) -> None:
    cmd = [exe, f"-T{fmt}"]
    if fmt == "png":
        cmd.append(f"-Gdpi={PNG_DPI}")
    cmd += ["-o", str(out), str(src)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise UserError(INSTALL_HINT.format(fmt=fmt)) from err
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"dot failed on {src}: {err.stderr.strip()}") from err


INDEX_STYLE = (
    "body{font-family:Helvetica,Arial,sans-serif;margin:2em}section{margin-bottom:3em}"
    ".figure{overflow:auto;border:1px solid #dee2e6;max-height:90vh}"
    ".figure svg,.figure img{max-width:100%;height:auto;display:block}"
    ".natural svg,.natural img{max-width:none}"  # the overview: readable at its natural size
)


def _inline_svg(path: Path) -> str:
    """An SVG file's <svg> element, for embedding in HTML (its <title> tooltips then work, which
    they do not through <img>)."""
    text = path.read_text(encoding="utf-8")
    return text[text.index("<svg") :]


def _index_html(program: Program, entries: list[tuple[str, str]], fmt: str, out: Path) -> str:
    """`entries`: (title, basename) per diagram; images are `basename.fmt`, sources `basename.dot`.
    SVGs are embedded inline (hover a node for its IR id); every picture links to its full-size
    file; the overview (the first entry) is shown at its natural size, scrolling if needed."""
    name = html.escape(program.spec.name)
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{name}: compiled networks</title>",
        f"<style>{INDEX_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{name}: compiled networks</h1>",
        f"<p>Spec <code>{html.escape(str(program.loaded.path))}</code>, sha256 "
        f"<code>{program.loaded.hash[:16]}</code>. Hover a node for its IR id; each picture's "
        f"link opens it at full size.</p>",
        "<ul>",
    ]
    lines += [f'<li><a href="#{base}">{html.escape(title)}</a></li>' for title, base in entries]
    lines.append("</ul>")
    for i, (title, base) in enumerate(entries):
        lines.append(f'<section id="{base}">')
        lines.append(f"<h2>{html.escape(title)}</h2>")
        links = [f'<a href="{base}.dot">{base}.dot</a>']
        if fmt in ("svg", "png", "pdf"):
            links.insert(0, f'<a href="{base}.{fmt}">{base}.{fmt} (full size)</a>')
        figure = "figure natural" if i == 0 else "figure"
        if fmt == "svg":
            lines.append(f'<div class="{figure}">{_inline_svg(out / f"{base}.svg")}</div>')
        elif fmt == "png":
            lines.append(
                f'<div class="{figure}"><a href="{base}.png"><img src="{base}.png" '
                f'alt="{html.escape(title)}"></a></div>'
            )
        lines.append("<p>" + " · ".join(links) + "</p>")
        lines.append("</section>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def render(
    program: Program,
    out_dir: str | Path,
    *,
    fmt: str = "svg",
    stages: str | int | Sequence[Stage] = "all",
    force: bool = False,
) -> list[Path]:
    """Write the stage diagrams, the overview sheet and `index.html` into the folder `out_dir`.

    `fmt`: svg, png, pdf (need the graphviz `dot` program) or dot (DOT text only). `stages`:
    'all', a resolution (its fade and stable phases) or a list of `Stage`. Every diagram's DOT
    source is written next to its image. Returns the files written: per diagram (the overview
    first, then the stages in training order) its .dot and its image, then index.html.

    The folder follows the rule of every command (`fsutil.plan_output_dir`): a missing or empty
    folder is written; a non-empty one only with `force`, and only when it holds an earlier
    render (marker kind `OUTPUT_KIND`) and nothing else, which is then replaced whole. The
    diagrams are drawn in a hidden sibling folder and published in one step (`staged_dir`), so
    a failed or killed render leaves the folder as it was.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown render format {fmt!r} (choose one of: {', '.join(FORMATS)})")
    chosen = chosen_stages(program, stages)
    exe = dot_program() if fmt != "dot" else None  # fail before writing anything
    plan = plan_output_dir(out_dir, kind=OUTPUT_KIND, force=force)
    entries = [("Overview: growth from the first to the final resolution", "overview")]
    entries += [(f"Stage {stage_title(program, s)}", stage_basename(s)) for s in chosen]
    sources = [overview_dot(program)] + [stage_dot(program, s) for s in chosen]
    names: list[str] = []
    with translate_write_errors(plan.path, "the partial diagrams were removed"):
        with staged_dir(plan) as tmp:
            jobs: list[tuple[Path, Path]] = []
            for (_, base), text in zip(entries, sources, strict=True):
                (tmp / f"{base}.dot").write_text(text, encoding="utf-8")
                names.append(f"{base}.dot")
                if exe is not None:
                    jobs.append((tmp / f"{base}.dot", tmp / f"{base}.{fmt}"))
                    names.append(f"{base}.{fmt}")
            if exe is not None:
                # one dot process per file, as many at a time as there are cores
                workers = max(1, min(len(jobs), os.cpu_count() or 1))
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    futures = [pool.submit(_run_dot, exe, src, dst, fmt) for src, dst in jobs]
                    for fut in futures:
                        fut.result()
            (tmp / "index.html").write_text(
                _index_html(program, entries, fmt, tmp), encoding="utf-8"
            )
            names.append("index.html")
    return [plan.path / name for name in names]
