"""Progress of long metric computations, shown on stderr by `progan-metrics` (silent otherwise).

Owns whether progress is shown (`show_progress`, a context the command line enters unless
`--quiet`; library calls and training evaluations stay silent) and its two forms: `bar`, a tqdm
bar over a loop whose length is known (images through Inception, KID subsets, MS-SSIM pairs,
SWD levels, images generated), and `step`, one line naming a computation that has no loop to
count (FID's matrix square root). Results stay on stdout; progress never mixes with them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
_SHOWN: ContextVar[bool] = ContextVar("progan_metrics_progress", default=False)
PREFIX = "progan-metrics"


@contextlib.contextmanager
def show_progress(enabled: bool = True) -> Iterator[None]:
    """Show progress bars and steps on stderr inside the block (when `enabled`)."""
    token = _SHOWN.set(enabled)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def shown() -> bool:
    return _SHOWN.get()


def bar(
    items: Iterable[T],
    *,
    total: int,
    desc: str,
    unit: str = "it",
    sizes: Iterable[int] | None = None,
) -> Iterator[T]:
    """`items`, with a tqdm bar on stderr when progress is shown; item i moves the bar by
    `sizes[i]` (the images of a batch, ...) or by 1."""
    if not shown():
        yield from items
        return
    steps = iter(sizes) if sizes is not None else None
    with tqdm(
        total=total, desc=f"{PREFIX}: {desc}", unit=unit, file=sys.stderr, dynamic_ncols=True
    ) as progress:
        for item in items:
            yield item
            progress.update(next(steps, 1) if steps is not None else 1)


def step(text: str) -> None:
    """One line on stderr naming a computation about to start (when progress is shown)."""
    if shown():
        print(f"{PREFIX}: {text}", file=sys.stderr, flush=True)


__all__ = ["bar", "show_progress", "shown", "step"]
