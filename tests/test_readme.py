"""README.md says what works: its commands and snippets run as written, its links resolve.

What runs, by the language of a fenced block in README.md:
- `bash` / `sh`: every command line, from the repository root, with the project's virtual
  environment first on PATH (`Path(sys.executable).parent`); each must exit 0. `make X` lines
  cannot run inside the suite (`make demo` trains for minutes, `make test` is this suite), so for
  them the target must exist and `make -n X` must succeed and print the commands README promises.
- `console`: each `$ command` runs the same way and must exit 0; the lines shown under it are its
  output (stdout and stderr together, blank lines ignored): a line `...` stands for any number of
  lines and `...` inside a line for any text, as in doctest.
- `python`: the block runs as a script; `pycon`: the block is a doctest (ELLIPSIS,
  NORMALIZE_WHITESPACE).
- `text`: illustrative output or diagrams, never run. Any other language in README is an error,
  so every block is classified on purpose.

A block preceded by `<!-- readme-test: after make demo -->` (or `after make demo-conditional`)
needs a demo's run folder: it runs, as written, in a temporary folder holding `specs/`,
`runs/00000-mnist_32/` and `runs/conditional/00000-mnist_32_conditional/`, whose checkpoints are
untrained generators of those specs at their final stage (what the commands read is the same;
only the weights differ from a real demo run).

Beyond README: every relative link and image in README.md and docs/*.md points to an existing
file (and heading, for `#anchor` links into Markdown); every `progan-*` command line written in
a shell block of those files uses only options its `--help` lists (for `progan-bench NAME -- ARGS`,
ARGS against `progan-bench NAME -- --help`); and docs/cli.md mentions every option of every
command in that command's section.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import benchmarks.__main__ as bench_cli
from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
BIN = Path(sys.executable).parent
TIMEOUT = 120  # seconds per command; each takes about a second on an idle 2-core machine
RUN_LANGS = {"bash", "sh", "console", "python", "pycon"}
README_LANGS = RUN_LANGS | {"text"}
SHELL_LANGS = {"bash", "sh", "console"}
AFTER_DEMO = "after make demo"
AFTER_CONDITIONAL = "after make demo-conditional"
DEMO_RUN = "runs/00000-mnist_32"
DEMO_RUNS = {
    "mnist_32.yaml": DEMO_RUN,
    "mnist_32_conditional.yaml": "runs/conditional/00000-mnist_32_conditional",
}
# What README says `make demo` and `make test` do; `make -n` must print these commands.
MAKE_PROMISES = {
    "demo": [
        "progan-dataset create --source mnist --out data/mnist32 --resolution 32",
        "progan-train specs/mnist_32.yaml --data data/mnist32 --outdir runs --device cpu",
    ],
    "test": ["-m pytest"],
}
CLIS = ["compile", "train", "dataset", "metrics", "export", "generate", "import", "bench"]
BENCHMARKS = [*bench_cli.ALL, *getattr(bench_cli, "ON_REQUEST", [])]  # progan-bench NAME
DATASET_SUBCOMMANDS = ["create", "info", "verify"]


# ---- reading Markdown -----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, text, the line of its opening fence, and the
    `readme-test` marker written just above it (if any)."""

    path: Path
    lang: str
    text: str
    line: int
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->$")


def fenced_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        above = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(above)
        blocks.append(
            Block(
                path, lang, "\n".join(body) + "\n", start + 1, marker.group(1) if marker else None
            )
        )
        i += 1
    return blocks


def prose(path: Path, *, code_spans: bool = False) -> str:
    """The Markdown text outside fenced blocks, without inline code spans unless `code_spans`
    (headings may hold them)."""
    out, fence = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(2)
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        out.append(line if code_spans else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def command_lines(block: Block) -> list[str]:
    """The commands of a shell block: `$ ` lines of a console block, else every line that is not
    blank or a comment; backslash continuations joined."""
    if block.lang == "console":
        raw = [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
    else:
        raw = [
            line
            for line in block.text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    joined: list[str] = []
    for line in raw:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line)
    return joined


def console_steps(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` line of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line.strip():
            steps[-1][1].append(line.rstrip())
    return steps


def output_pattern(expected: list[str]) -> re.Pattern[str]:
    """doctest-like: a `...` line skips lines, `...` in a line matches any text."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            text = ".*".join(re.escape(piece) for piece in line.split("..."))
            parts.append(text + r"[ \t]*\n")
    return re.compile("".join(parts))


def normalised(output: str) -> str:
    return "".join(line.rstrip() + "\n" for line in output.splitlines() if line.strip())


# ---- running --------------------------------------------------------------------------------


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"  # the machine may be shared; results do not depend on it
    env.pop("PROGAN_UPDATE_GOLDEN", None)
    return env


def run_shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=environment(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=TIMEOUT,
    )


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=TIMEOUT,
    )


DOCTEST = """\
import doctest, sys
text, name, line = sys.argv[1], sys.argv[2], int(sys.argv[3])
test = doctest.DocTestParser().get_doctest(text, {}, name, name, line)
runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
runner.run(test)
sys.exit(1 if runner.failures else 0)
"""


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def check_make(command: str, where: str) -> None:
    words = shlex.split(command, comments=True)
    assert len(words) == 2, f"{where}: expected `make TARGET`, got {command!r}"
    target = words[1]
    assert target in make_targets(), f"{where}: the Makefile has no target {target!r}"
    dry = subprocess.run(
        ["make", "-n", target], cwd=ROOT, text=True, capture_output=True, timeout=TIMEOUT
    )
    assert dry.returncode == 0, f"{where}: make -n {target} failed:\n{dry.stderr}"
    for promised in MAKE_PROMISES.get(target, []):
        assert promised in dry.stdout, f"{where}: make -n {target} does not run {promised!r}"


def run_block(block: Block, cwd: Path) -> None:
    if block.lang in ("bash", "sh"):
        for command in command_lines(block):
            if command.split()[:1] == ["make"]:
                check_make(command, block.where)
                continue
            done = run_shell(command, cwd)
            assert done.returncode == 0, (
                f"{block.where}: `{command}` exited {done.returncode}:\n{done.stdout[-3000:]}"
            )
    elif block.lang == "console":
        for command, expected in console_steps(block):
            done = run_shell(command, cwd)
            assert done.returncode == 0, (
                f"{block.where}: `{command}` exited {done.returncode}:\n{done.stdout[-3000:]}"
            )
            if expected:
                shown = normalised(done.stdout)
                assert output_pattern(expected).fullmatch(shown), (
                    f"{block.where}: the output of `{command}` is not what README shows:\n"
                    f"{shown[:4000]}"
                )
    elif block.lang == "python":
        done = run_python(["-c", block.text], cwd)
        assert done.returncode == 0, f"{block.where}: the snippet failed:\n{done.stdout[-3000:]}"
    elif block.lang == "pycon":
        done = run_python(["-c", DOCTEST, block.text, str(block.path.name), str(block.line)], cwd)
        assert done.returncode == 0, f"{block.where}: the doctest failed:\n{done.stdout[-3000:]}"


README_BLOCKS = fenced_blocks(README)
RUNNABLE = [b for b in README_BLOCKS if b.lang in RUN_LANGS]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that looks like the repository after `make demo` and `make demo-conditional` to
    the README's commands: specs/, runs/00000-mnist_32/checkpoints/ and
    runs/conditional/00000-mnist_32_conditional/checkpoints/, each with one (untrained)
    final-stage checkpoint."""
    import torch

    from progan_dsl.checkpoint import Checkpoint
    from progan_dsl.compiler import compile_spec

    root = tmp_path_factory.mktemp("after_demo")
    (root / "specs").symlink_to(ROOT / "specs")
    for spec, run in DEMO_RUNS.items():
        program = compile_spec(ROOT / "specs" / spec)
        stage = program.final_stage
        torch.manual_seed(0)
        G, D = program.build("G", stage), program.build("D", stage)
        folder = root / run / "checkpoints"
        folder.mkdir(parents=True)
        Checkpoint.from_weights(
            program.loaded, stage, G=G.state_dict(), D=D.state_dict(), images_shown=96_000
        ).save(folder)
    return root


def test_readme_blocks_are_classified() -> None:
    """Every block says whether it runs (its language); markers are known ones."""
    bad = [
        f"{b.where}: ```{b.lang or '(no language)'}"
        for b in README_BLOCKS
        if b.lang not in README_LANGS
    ]
    assert not bad, f"README blocks must be one of {sorted(README_LANGS)}: {bad}"
    unknown = [
        b.where for b in README_BLOCKS if b.marker not in (None, AFTER_DEMO, AFTER_CONDITIONAL)
    ]
    assert not unknown, f"unknown readme-test markers at {unknown}"
    assert len(RUNNABLE) >= 5, "README lost its commands"


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"line{b.line}-{b.lang}" for b in RUNNABLE])
def test_readme_block_runs(block: Block, request: pytest.FixtureRequest) -> None:
    after = block.marker in (AFTER_DEMO, AFTER_CONDITIONAL)
    cwd = request.getfixturevalue("demo_root") if after else ROOT
    run_block(block, cwd)


def test_make_entry_points_match_ci() -> None:
    """The two commands stay what .ci/run and the Makefile use."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.MULTILINE), ".ci/run must run `make test`"
    readme_make = [
        c
        for b in README_BLOCKS
        if b.lang in ("bash", "sh")
        for c in command_lines(b)
        if c.split()[:1] == ["make"]
    ]
    assert [shlex.split(c, comments=True) for c in readme_make][:2] == [
        ["make", "demo"],
        ["make", "test"],
    ]


# ---- links ----------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose(path, code_spans=True).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


LINKED = [README, *DOCS]


@pytest.mark.parametrize("path", LINKED, ids=[str(p.relative_to(ROOT)) for p in LINKED])
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in _LINK.findall(prose(path)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"


# ---- commands written in the docs use options that exist ------------------------------------


def help_text(argv: list[str]) -> str:
    """What `progan-X ARGS` (argv) prints to stdout, run in this process (the commands print
    their help without starting a process each): the function the installed console script
    `progan-X` calls, with ARGS; exit 0 (or argparse's SystemExit(0) after --help) required."""
    name, args = argv[0], argv[1:]
    (entry,) = entry_points(group="console_scripts", name=name)
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = [str(BIN / name), *args]  # the program name argparse shows
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = entry.load()(args)
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = saved
    assert code in (0, None), f"{' '.join(argv)} failed (exit {code}): {err.getvalue()}"
    return out.getvalue()


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    """`--help` of every command (and progan-dataset subcommand), keyed by command name."""
    calls = [(f"progan-{c}", [f"progan-{c}", "--help"]) for c in CLIS]
    calls += [(f"progan-dataset {s}", ["progan-dataset", s, "--help"]) for s in DATASET_SUBCOMMANDS]
    return {key: help_text(argv) for key, argv in calls}


def options_of(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text))


def written_commands(path: Path) -> list[tuple[str, str, list[str]]]:
    """(where, command name, words) of every progan-* command in the file's shell blocks."""
    found = []
    for block in fenced_blocks(path):
        if block.lang not in SHELL_LANGS:
            continue
        for line in command_lines(block):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                words = line.split()
            command: list[str] = []
            for word in [*words, ";"]:
                if word in (";", "&&", "||", "|"):
                    if command:
                        found.append((block.where, command[0], command[1:]))
                    command = []
                elif command or word.startswith("progan-") or word == "progan_dsl.train":
                    command.append("progan-train" if word == "progan_dsl.train" else word)
    return [(w, name, args) for w, name, args in found if name.startswith("progan-")]


_BENCH_HELPS: dict[str, str] = {}


def bench_help(name: str) -> str:
    """`progan-bench NAME -- --help` (imports torch for some benchmarks: asked only when used)."""
    if name not in _BENCH_HELPS:
        _BENCH_HELPS[name] = help_text(["progan-bench", name, "--", "--help"])
    return _BENCH_HELPS[name]


def wrong_bench_options(where: str, args: list[str]) -> list[str]:
    """What `progan-bench [NAME ...] -- ARGS` passes after `--` that a named benchmark lacks."""
    cut = args.index("--")
    names = [a for a in args[:cut] if not a.startswith("-")] or bench_cli.ALL
    wrong = []
    for name in names:
        if name not in BENCHMARKS:
            wrong.append(f"{where}: progan-bench has no benchmark {name}")
            continue
        known = options_of(bench_help(name))
        for word in args[cut + 1 :]:
            flag = word.strip("[](){}|").split("=")[0]
            if flag.startswith("--") and len(flag) > 2 and flag not in known:
                wrong.append(f"{where}: progan-bench {name} has no option {flag}")
    return wrong


@pytest.mark.parametrize("path", LINKED, ids=[str(p.relative_to(ROOT)) for p in LINKED])
def test_written_commands_use_real_options(path: Path, helps: dict[str, str]) -> None:
    wrong = []
    for where, name, args in written_commands(path):
        if name == "progan-bench" and "--" in args:
            wrong += wrong_bench_options(where, args)
            args = args[: args.index("--")]
        key = name
        if name == "progan-dataset" and args and args[0] in DATASET_SUBCOMMANDS:
            key = f"progan-dataset {args[0]}"
        if key not in helps:
            wrong.append(f"{where}: unknown command {name}")
            continue
        known = options_of(helps[key])
        for word in args:
            flag = word.strip("[](){}|").split("=")[0]
            if flag.startswith("--") and len(flag) > 2 and flag not in known:
                wrong.append(f"{where}: {key} has no option {flag}")
    assert not wrong, wrong


def test_cli_reference_lists_every_option(helps: dict[str, str]) -> None:
    """docs/cli.md has a section per command that names each option its --help lists."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = dict(
        re.findall(
            r"^## `?(progan-[a-z]+)`?[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL
        )
    )
    missing = []
    for key, help_text in helps.items():
        name = key.split()[0]
        if name not in sections:
            missing.append(f"no section '## {name}'")
            continue
        for option in sorted(options_of(help_text) - {"--help"}):
            if option not in sections[name]:
                missing.append(f"{key}: {option}")
    assert not missing, missing
