"""Console entry points. Each is thin: parse arguments, call one library function, format errors.

User errors (`UserError`, spec errors) print a located message and exit 2, never a traceback. So
do the file-system errors a user causes (a path under a file, a read-only folder, a full disk):
they name the path and the reason. Output piped into a program that stops reading (`| head`)
ends quietly. Ctrl-C exits 130.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Sequence

from progan_dsl.errors import EXIT_USER_ERROR, UserError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
_USER_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.ENOTDIR: "a parent is not a folder",
    errno.EISDIR: "is a folder",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "name too long",
}


def _os_error_message(err: OSError) -> str | None:
    """A user-facing message for an OSError a user can fix, else None (a bug: keep the trace)."""
    reason = _USER_ERRNOS.get(err.errno or -1)
    if reason is None:
        return None
    where = err.filename if err.filename is not None else "a file"
    if err.errno in (errno.EEXIST, errno.ENOTDIR) and err.filename is not None:
        if os.path.exists(err.filename) and not os.path.isdir(err.filename):
            return f"{where}: exists and is not a folder (a folder was needed there)"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{reason} while writing {where}; nothing older was touched"
    return f"{where}: {reason}"


def _run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:
        message = _os_error_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


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
    from progan_dsl.export.cli import main

    return _run(main, argv)


def generate_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.generate.cli import main

    return _run(main, argv)


def import_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.pretrained.cli import main

    return _run(main, argv)


def bench_main(argv: Sequence[str] | None = None) -> int:
    from progan_dsl.benchmarks.__main__ import main

    return _run(lambda args: main(None if args is None else list(args)), argv)
