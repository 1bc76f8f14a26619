"""The Python API of checkpoints does what the CLIs do and speaks Python: a run folder whose
newest checkpoint is a fade-in still gives a generator (`stable=True`), a fade-in's own
generator names both ways to pick a stable end, and a checkpoint prints as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.errors import UserError
from tests.conftest import write_tiny_run


def test_a_run_ending_in_a_fade_in_gives_its_newest_stable_generator(tmp_path: Path) -> None:
    written = write_tiny_run(tmp_path, [(4, "stable"), (8, "fade"), (8, "stable"), (16, "fade")])
    newest = Checkpoint.load(tmp_path)
    assert str(newest.stage) == "16/fade"
    with pytest.raises(UserError) as err:
        newest.generator()
    assert "taken during the fade-in 16/fade" in str(err.value)
    assert "pick one (8 or 16: --resolution on the command line, generator(resolution=...)" in (
        str(err.value)
    )
    assert "Checkpoint.load(run, stable=True)" in str(err.value)
    stable = Checkpoint.load(tmp_path, stable=True)
    assert str(stable.stage) == "8/stable" and stable.path == written[(8, "stable")].path
    assert stable.skipped == (f"{written[(16, 'fade')].path}: taken during the fade-in 16/fade",)
    G = stable.generator()
    z = torch.randn(2, 16)
    assert G(z).shape == (2, 1, 8, 8)
    # the fade-in checkpoint still holds both stable ends when asked by resolution
    assert newest.generator(resolution=8)(z).shape == (2, 1, 8, 8)


def test_a_checkpoint_prints_as_one_short_line(tmp_path: Path) -> None:
    written = write_tiny_run(tmp_path, [(4, "stable")])
    ckpt = written[(4, "stable")]
    text = repr(ckpt)
    assert "\n" not in text and len(text) < 300 and "tensor" not in text
    assert text.startswith(f"Checkpoint({str(ckpt.path)!r}, spec tiny.yaml (")  # type: ignore[attr-defined]
    assert text.endswith("stage 4/stable, 1,000 images, G, D, G_ema, weights only)")
