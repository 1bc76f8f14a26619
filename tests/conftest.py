"""Shared test helpers: paths, golden files, the CUDA marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
TINY = ROOT / "tests" / "specs" / "tiny.yaml"
GOLDEN = ROOT / "tests" / "golden"


def check_golden(relpath: str, text: str) -> None:
    """Compare `text` with tests/golden/<relpath>; PROGAN_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / relpath
    if os.environ.get("PROGAN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"missing golden file {path}; run with PROGAN_UPDATE_GOLDEN=1"
    expected = path.read_text()
    if text != expected:
        import difflib

        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            "golden", "now", n=2))
        pytest.fail(f"{relpath} differs from the golden file:\n{diff[:4000]}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def write_tiny_run(folder: Path, stages: list[tuple[int, str]]) -> dict[tuple[int, str], object]:
    """A run folder of weights-only checkpoints of the tiny spec (checkpoint i at 1000 * (i + 1)
    images; G EMA differs from G), as progan-train would leave them. Returns the Checkpoints."""
    import torch

    from progan_dsl.checkpoint import Checkpoint
    from progan_dsl.compiler import compile_spec

    program = compile_spec(TINY)
    written = {}
    for i, (res, phase) in enumerate(stages):
        stage = program.stage(res, phase)
        torch.manual_seed(100 + i)
        G, G_ema, D = (program.build(net, stage) for net in ("G", "G", "D"))
        with torch.no_grad():
            for p in G_ema.parameters():
                p.add_(0.3 * torch.randn_like(p))
        ckpt = Checkpoint.from_weights(program.loaded, stage, G=G.state_dict(), D=D.state_dict(),
                                       G_ema=G_ema.state_dict(), images_shown=1000 * (i + 1))
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        written[(res, phase)] = ckpt.save(folder / "checkpoints")
    return written
