"""Console entry points. Each is thin: parse arguments, call one library function, format errors.

User errors (`UserError`, spec errors) print a located message and exit 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from progan_dsl.errors import EXIT_USER_ERROR, UserError


def _run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def compile_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.compile_cli import main

    return _run(main, argv)


def train_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.train.cli import main

    return _run(main, argv)


def dataset_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.data.cli import main

    return _run(main, argv)


def metrics_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.metrics.cli import main

    return _run(main, argv)


def export_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.export.cli import export_main as main

    return _run(main, argv)


def generate_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.export.cli import generate_main as main

    return _run(main, argv)
