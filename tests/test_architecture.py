"""The layout is the architecture: import rules, sizes, packaging, CLI start-up.

Imports go one way (spec -> ir -> codegen -> compiler -> checkpoint -> generate -> metrics /
export -> train; CLIs on top). Checked from the source with `ast`, counting every import (also
the ones inside functions, which are still dependencies), so a lower layer can never reach a
higher one, and module-level imports have no cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
import tomllib

from tests.conftest import ROOT

PACKAGE = ROOT / "progan_dsl"
CODEGEN = ROOT / "codegen"  # installed as progan_dsl.codegen (pyproject package-dir)
CLI_MODULES = {"progan_dsl.cli", "progan_dsl.compile_cli"} | {
    f"progan_dsl.{p}.cli" for p in ("train", "data", "metrics", "export", "generate", "pretrained")
}
ENTRY_POINTS = {"progan_dsl.cli"} | {
    m for m in ("progan_dsl.train.__main__", "progan_dsl.pretrained.__main__")
}
# (importer prefix, forbidden prefix, why)
LAYERS = [
    ("progan_dsl.spec", "torch", "the spec language loads without torch"),
    ("progan_dsl.ir", "torch", "the IR loads without torch"),
    ("progan_dsl.metrics", "progan_dsl.export", "metrics read generators through generate"),
    ("progan_dsl.metrics", "progan_dsl.train", "metrics know nothing of training"),
    ("progan_dsl.export", "progan_dsl.train", "export knows nothing of training"),
    ("progan_dsl.export", "progan_dsl.metrics", "export knows nothing of metrics"),
    ("progan_dsl.generate", "progan_dsl.export", "generate is below export"),
    ("progan_dsl.generate", "progan_dsl.metrics", "generate is below metrics"),
    ("progan_dsl.generate", "progan_dsl.train", "generate is below train"),
    ("progan_dsl.checkpoint", "progan_dsl.train", "the checkpoint is below train"),
    ("progan_dsl.checkpoint", "progan_dsl.generate", "the checkpoint is below generate"),
    ("progan_dsl.checkpoint", "progan_dsl.export", "the checkpoint is below export"),
    ("progan_dsl.data", "progan_dsl.train", "datasets know nothing of training"),
    ("progan_dsl.data", "progan_dsl.metrics", "datasets know nothing of metrics"),
    ("progan_dsl.spec", "progan_dsl.ir", "spec is below ir"),
    ("progan_dsl.ir", "progan_dsl.compiler", "ir is below the compiler"),
    ("progan_dsl.codegen", "progan_dsl.compiler", "codegen is below the compiler"),
    (
        "progan_dsl.nn",
        "progan_dsl",
        "the layer runtime is copied into emitted packages: torch only",
    ),
]


def module_files() -> dict[str, Path]:
    files = {}
    for root, prefix in ((PACKAGE, "progan_dsl"), (CODEGEN, "progan_dsl.codegen")):
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([prefix, *parts])] = path
    return files


def imports(path: Path, module: str, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` is no import
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _type_checking_only(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.module:
                    names.add(sub.module)
    return names


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    out = {}
    for module, path in files.items():
        every = imports(path, module, top_level_only=False) - _type_checking_only(path)
        out[module] = {
            m for m in every if m.split(".")[0] in ("progan_dsl", "torch", "onnx", "onnxruntime")
        }
    return out


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "forbidden", "why"), LAYERS)
def test_imports_go_one_way(
    graph: dict[str, set[str]], importer: str, forbidden: str, why: str
) -> None:
    bad = sorted(
        (m, i)
        for m, deps in graph.items()
        if _matches(m, importer)
        for i in deps
        if _matches(i, forbidden) and not _matches(i, importer)
    )
    assert not bad, f"{why}: {bad[:5]}"


def test_nothing_imports_a_cli_module(graph: dict[str, set[str]]) -> None:
    bad = sorted(
        (m, i)
        for m, deps in graph.items()
        if m not in ENTRY_POINTS and m not in CLI_MODULES
        for i in deps
        if i in CLI_MODULES
    )
    assert not bad, bad
    cli_to_cli = sorted(
        (m, i)
        for m, deps in graph.items()
        if m in CLI_MODULES - ENTRY_POINTS
        for i in deps
        if i in CLI_MODULES and i != m
    )
    assert not cli_to_cli, cli_to_cli


def test_no_import_cycles() -> None:
    files = module_files()
    g = nx.DiGraph()
    for module, path in files.items():
        for dep in imports(path, module, top_level_only=True):
            if dep in files and dep != module:
                g.add_edge(module, dep)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, cycles[:3]
    packages = nx.DiGraph()  # nor between the subpackages, counting lazy imports too
    for module, path in files.items():
        src = ".".join(module.split(".")[:2])
        for dep in imports(path, module, top_level_only=False) - _type_checking_only(path):
            if dep in files:
                dst = ".".join(dep.split(".")[:2])
                if src != dst and module not in CLI_MODULES and module not in ENTRY_POINTS:
                    packages.add_edge(src, dst)
    assert not list(nx.simple_cycles(packages)), list(nx.simple_cycles(packages))[:3]


def test_spec_and_ir_load_without_torch() -> None:
    code = (
        "import sys; import progan_dsl.spec, progan_dsl.ir, progan_dsl.ir.dump; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_training_code_stays_small() -> None:
    """No class in progan_dsl/train longer than 200 lines, no function longer than 90. The
    Trainer may reach 300: it owns one iteration, the modules of its phase and its own checkpoint
    state in both directions (a second module restoring its fields was the seam that went)."""
    too_long = []
    for path in (PACKAGE / "train").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                limit = 90
                if isinstance(node, ast.ClassDef):
                    limit = 300 if node.name == "Trainer" else 200
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > limit:
                    too_long.append(f"{path.name}:{node.name} {length} > {limit}")
    assert not too_long, too_long


def test_pyproject_lists_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.relative_to(ROOT).parts[:-1]) for p in PACKAGE.rglob("__init__.py")}
    mapped = config["package-dir"]
    assert mapped == {"progan_dsl.codegen": "codegen", "progan_dsl.benchmarks": "benchmarks"}
    for package, folder in mapped.items():
        on_disk |= {
            ".".join([package, *p.relative_to(ROOT / folder).parts[:-1]])
            for p in (ROOT / folder).rglob("__init__.py")
        }
    assert listed == on_disk
    assert not {"codegen", "benchmarks"} & listed  # never generic top-level packages


SCRIPTS = ["compile", "train", "dataset", "metrics", "export", "generate", "import", "bench"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_is_fast_and_loads_no_torch(name: str) -> None:
    code = (
        "import sys, io, contextlib\n"
        f"from progan_dsl.cli import {name}_main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        {name}_main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))\n"
        "print(len(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, modules = out.stdout.split("\n")[:2]
    # fast by what it loads, not by a clock: none of the heavy packages, and far fewer modules
    # than torch alone brings in (over 1,000); today's commands load 93 to 371
    assert heavy == "[]", out.stdout
    assert int(modules) < 600, out.stdout


def test_top_level_api() -> None:
    import progan_dsl
    from progan_dsl import Checkpoint, compile_spec, load_spec

    program = compile_spec(load_spec(ROOT / "specs" / "mnist_32.yaml"))
    assert program.final_stage.resolution == 32 and Checkpoint.__name__ == "Checkpoint"
    assert "compile_spec" in dir(progan_dsl)


def test_lint_and_format_are_clean() -> None:
    """ruff check and ruff format --check over the repository (line length as configured), and
    mypy on spec/ and ir/: the style is enforced, not hoped for."""
    bin_dir = Path(sys.executable).parent
    for command in (
        ["ruff", "check", "-q", "."],
        ["ruff", "format", "--check", "-q", "."],
        ["mypy"],
    ):
        tool = bin_dir / command[0]
        if not tool.exists():
            pytest.skip(f"{command[0]} is not installed next to {sys.executable}")
        done = subprocess.run(
            [str(tool), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_training_modules_import_one_way() -> None:
    """No cycle among progan_dsl.train's modules, counting lazy and TYPE_CHECKING imports: the
    Trainer writes and restores its own state, and nothing it uses imports it back."""
    files = module_files()
    g = nx.DiGraph()
    for module, path in files.items():
        if not module.startswith("progan_dsl.train"):
            continue
        for dep in imports(path, module, top_level_only=False):
            if dep in files and dep != module and dep.startswith("progan_dsl.train"):
                g.add_edge(module, dep)
    assert not list(nx.simple_cycles(g)), list(nx.simple_cycles(g))[:3]
