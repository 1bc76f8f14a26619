"""Fixtures of the importer tests: one CPU thread, and official-format pickles written to disk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.pretrained.official_format import dump, official_tuple

# Small official configurations (networks.py arguments): widths nf = 32, 32, 16, 8 at 4..32.
SMALL = dict(num_channels=3, fmap_base=64, fmap_max=32)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


WritePickle = Callable[..., Path]


@pytest.fixture
def write_pickle(tmp_path: Path) -> WritePickle:
    """write_pickle(g_kwargs, d_kwargs, name=..., protocol=4, lod=0.0, seed=0) -> the .pkl path."""

    def write(
        g: dict[str, Any],
        d: dict[str, Any],
        *,
        name: str = "network.pkl",
        protocol: int = 4,
        **kw: Any,
    ) -> Path:
        return dump(official_tuple(g, d, **kw), tmp_path / name, protocol=protocol)

    return write
