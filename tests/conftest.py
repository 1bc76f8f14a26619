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
