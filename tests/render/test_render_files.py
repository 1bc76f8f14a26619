"""`render()`: the files it writes, `index.html`, option errors, behaviour without the graphviz
`dot` program (simulated with monkeypatch), real SVG/PNG output (skipped without `dot`), and the
output-folder rule every command follows (a folder holding anything but an earlier render is
refused; `--force` replaces an earlier render whole; a failed render leaves the folder as
it was)."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

import progan_dsl
from progan_dsl import render as render_mod
from progan_dsl.compiler import Program, compile_spec
from progan_dsl.errors import UserError
from progan_dsl.ir import Stage
from progan_dsl.render import render

REPO = Path(progan_dsl.__file__).resolve().parents[1]
TINY = REPO / "tests" / "specs" / "tiny.yaml"
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="graphviz 'dot' program not installed")

TINY_BASES = [
    "overview",
    "stage_0004_stable",
    "stage_0008_fade",
    "stage_0008_stable",
    "stage_0016_fade",
    "stage_0016_stable",
]


@pytest.fixture(scope="module")
def tiny() -> Program:
    return compile_spec(TINY)


def _no_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        render_mod.shutil,
        "which",
        lambda name, *a, **k: None if name == "dot" else real_which(name, *a, **k),
    )


def _index_refs(index: Path) -> tuple[list[str], list[str]]:
    text = index.read_text(encoding="utf-8")
    return re.findall(r'<img src="([^"]+)"', text), re.findall(r'<a href="([^"#][^"]*)"', text)


# ---- without dot --------------------------------------------------------------------------------


def test_dot_format_writes_every_stage_and_index(tiny: Program, tmp_path: Path) -> None:
    out = tmp_path / "render"
    written = render(tiny, out, fmt="dot")
    assert written == [out / f"{b}.dot" for b in TINY_BASES] + [out / "index.html"]
    imgs, links = _index_refs(out / "index.html")
    assert imgs == []
    assert links == [f"{b}.dot" for b in TINY_BASES]
    assert (out / "stage_0008_fade.dot").read_text().startswith("// tiny (spec sha256 ")


def test_missing_dot_program_fails_clearly_and_writes_nothing(
    tiny: Program, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_dot(monkeypatch)
    out = tmp_path / "render"
    for fmt in ("svg", "png", "pdf"):
        with pytest.raises(UserError) as err:
            render(tiny, out, fmt=fmt)
        msg = str(err.value)
        assert "'dot' program" in msg and "not found" in msg
        assert "apt-get install graphviz" in msg and "brew install graphviz" in msg
        assert "conda install" in msg and "--format dot" in msg
    assert not out.exists()
    # the DOT format needs no executable
    assert (out / "overview.dot") in render(tiny, out, fmt="dot")


def test_dot_vanishing_between_lookup_and_run_is_a_user_error(
    tiny: Program, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_mod.shutil, "which", lambda name, *a, **k: str(tmp_path / "no-dot"))
    with pytest.raises(UserError, match="apt-get install graphviz"):
        render(tiny, tmp_path / "out", fmt="svg", stages=4)


def test_cli_prints_the_missing_dot_message_and_exits_2(
    tiny: Program,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from progan_dsl.cli import _run

    _no_dot(monkeypatch)
    assert _run(lambda argv: len(render(tiny, tmp_path, fmt="png")), None) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the graphviz 'dot' program") and "Traceback" not in err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "jpg"}, "unknown render format 'jpg' (choose one of: svg, png, pdf, dot)"),
        (
            {"stages": 32},
            "no stage 32 in spec 'tiny' (stages: 4/stable, 8/fade, 8/stable, 16/fade, 16/stable)",
        ),
        (
            {"stages": "big"},
            "expected a resolution or 'all', got 'big' (resolutions in spec 'tiny': 4, 8, 16)",
        ),
        ({"stages": [Stage(4, "fade")]}, "no stage 4/fade in spec 'tiny'"),
    ],
)
def test_bad_options_are_user_errors(
    tiny: Program, tmp_path: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(UserError) as err:
        render(tiny, tmp_path, **kwargs)
    assert message in str(err.value)


def test_stage_selection(tiny: Program, tmp_path: Path) -> None:
    def bases(stages: object) -> list[str]:
        files = render(tiny, tmp_path / str(stages), fmt="dot", stages=stages)  # type: ignore[arg-type]
        return [p.stem for p in files if p.suffix == ".dot"]

    assert bases(8) == ["overview", "stage_0008_fade", "stage_0008_stable"]
    assert bases("16") == ["overview", "stage_0016_fade", "stage_0016_stable"]
    assert bases(4) == ["overview", "stage_0004_stable"]  # the base resolution has no fade-in
    assert bases([Stage(16, "stable"), Stage(8, "fade")]) == [
        "overview",
        "stage_0008_fade",
        "stage_0016_stable",
    ]


# ---- with dot -----------------------------------------------------------------------------------


@needs_dot
def test_svg_of_two_stages(tiny: Program, tmp_path: Path) -> None:
    written = render(tiny, tmp_path, fmt="svg", stages=8)
    bases = ["overview", "stage_0008_fade", "stage_0008_stable"]
    assert written == [tmp_path / f"{b}.{ext}" for b in bases for ext in ("dot", "svg")] + [
        tmp_path / "index.html"
    ]
    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ET.parse(tmp_path / "stage_0008_fade.svg").getroot()
    titles = {
        t.text
        for g in root.iter(f"{{{ns['svg']}}}g")
        for t in g.findall("svg:title", ns)
        if g.get("class") == "node"
    }
    assert {"G.b8.fade", "G.b8.skip_up", "D.b4.fromrgb", "D.b8.fade"} <= titles
    texts = [t.text for t in root.iter(f"{{{ns['svg']}}}text")]
    assert texts.count("alpha") == 2 and texts.count("1 - alpha") == 2
    assert "1,740 params" in texts  # G.b8.conv0
    imgs, links = _index_refs(tmp_path / "index.html")
    assert imgs == []  # SVGs are embedded inline, so their node tooltips work
    assert links == [f"{b}.{ext}" for b in bases for ext in ("svg", "dot")]  # full size + source
    for ref in links:
        assert (tmp_path / ref).is_file()
    index = (tmp_path / "index.html").read_text()
    assert index.count("<svg") == 3 and "<title>G.b8.fade</title>" in index
    assert '<div class="figure natural"><svg' in index  # the overview at its natural size


@needs_dot
def test_png_and_pdf(tiny: Program, tmp_path: Path) -> None:
    render(tiny, tmp_path / "png", fmt="png", stages=16)
    with Image.open(tmp_path / "png" / "stage_0016_fade.png") as im:
        assert im.format == "PNG"
        w, h = im.size
        assert 600 < w < 3000 and 600 < h < 3000
    imgs, links = _index_refs(tmp_path / "png" / "index.html")
    assert imgs == ["overview.png", "stage_0016_fade.png", "stage_0016_stable.png"]
    assert [link for link in links if link.endswith(".png")] == [i for i in imgs for _ in (0, 1)]
    render(tiny, tmp_path / "pdf", fmt="pdf", stages=4)
    assert (tmp_path / "pdf" / "stage_0004_stable.pdf").read_bytes().startswith(b"%PDF")
    text = (tmp_path / "pdf" / "index.html").read_text()
    assert '<a href="stage_0004_stable.pdf">' in text and "<img" not in text


@needs_dot
def test_1024_final_stage_png_is_readable_not_a_strip(tmp_path: Path) -> None:
    prog = compile_spec(REPO / "specs" / "celebahq_1024.yaml")
    render(prog, tmp_path, fmt="png", stages=[Stage(1024, "fade")])
    with Image.open(tmp_path / "stage_1024_fade.png") as im:
        w, h = im.size
    # the whole 1024 fade-in stage (24 nodes in G, 25 in D) fits in a page-like picture at 96 dpi
    assert w < 2000 and h < 4000 and h / w < 3
    with Image.open(tmp_path / "overview.png") as im:
        w, h = im.size
    assert w < 4000 and h < 2000


# ---- the output folder --------------------------------------------------------------------------


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_folder_holding_other_files_is_refused_untouched(tiny: Program, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own notes")
    (out / "index.html").write_text("<p>my own page</p>")
    for force in (False, True):
        with pytest.raises(UserError) as err:
            render(tiny, out, fmt="dot", force=force)
        assert str(err.value) == (
            f"{out} is not empty and is not an earlier progan-compile --render output; refusing "
            "to touch it: choose a new or empty folder (nothing was written)"
        )
    assert _tree(out) == {"index.html": b"<p>my own page</p>", "notes.txt": b"my own notes"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging folder left


def test_another_commands_output_is_refused_even_with_force(tiny: Program, tmp_path: Path) -> None:
    from progan_dsl.codegen import emit_package

    out = tmp_path / "pkg"
    emit_package(tiny.graphs, out)
    before = _tree(out)
    with pytest.raises(UserError, match=r"\(it holds progan-compile --emit-source output\)"):
        render(tiny, out, fmt="dot", force=True)
    assert _tree(out) == before


def test_force_replaces_only_an_earlier_render_whole(tiny: Program, tmp_path: Path) -> None:
    out = tmp_path / "render"
    render(tiny, out, fmt="dot", stages=8)
    first = _tree(out)
    assert "stage_0008_fade.dot" in first
    with pytest.raises(UserError) as err:
        render(tiny, out, fmt="dot", stages=4)
    assert str(err.value) == (
        f"{out} holds an earlier progan-compile --render output; pass --force to replace it"
    )
    assert _tree(out) == first
    written = render(tiny, out, fmt="dot", stages=4, force=True)
    # the earlier render is replaced whole: its 8x8 diagrams are gone, the marker lists the rest
    files = ["index.html", "overview.dot", "stage_0004_stable.dot"]
    assert sorted(p.name for p in written) == files
    marker = json.loads((out / ".progan-output.json").read_text())
    assert marker["kind"] == "progan-compile --render"
    assert marker["files"] == files
    assert sorted(_tree(out)) == [".progan-output.json", *marker["files"]]
    # a file added by hand to an earlier render is never deleted
    (out / "mine.txt").write_text("x")
    with pytest.raises(UserError, match=r"holds files that progan-compile --render did not write"):
        render(tiny, out, fmt="dot", force=True)
    assert (out / "mine.txt").read_text() == "x" and (out / "stage_0004_stable.dot").exists()


def test_a_failed_render_leaves_the_earlier_one(
    tiny: Program, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "render"
    render(tiny, out, fmt="dot", stages=4)
    before = _tree(out)
    monkeypatch.setattr(render_mod.shutil, "which", lambda name, *a, **k: "/usr/bin/dot")

    def broken(exe: str, src: Path, dst: Path, fmt: str) -> None:
        raise RuntimeError(f"dot failed on {src}")

    monkeypatch.setattr(render_mod, "_run_dot", broken)
    with pytest.raises(RuntimeError, match="dot failed"):
        render(tiny, out, fmt="svg", force=True)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["render"]  # the staging folder is gone


def test_cli_render_follows_the_folder_rule(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from progan_dsl.cli import compile_main

    out = tmp_path / "diagrams"
    out.mkdir()
    (out / "photo.jpg").write_bytes(b"\xff\xd8")
    argv = [str(TINY), "--render", str(out), "--format", "dot", "--stage", "4"]
    assert compile_main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {out} is not empty and is not an earlier progan-compile --render output; "
        "refusing to touch it: choose a new or empty folder (nothing was written)\n"
    )
    assert _tree(out) == {"photo.jpg": b"\xff\xd8"}
    (out / "photo.jpg").unlink()
    assert compile_main(argv) == 0
    assert capsys.readouterr().out == f"wrote 3 files to {out}\n"
    assert compile_main(argv) == 2
    assert "pass --force to replace it" in capsys.readouterr().err
    assert compile_main([*argv, "--force"]) == 0
