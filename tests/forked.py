"""A child process forked from the test process, for tests that kill a real process mid-way: the
child starts with every module already imported (no second start of Python and torch), runs one
function and exits with its return value, or dies of the signal it meets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

EXIT_CRASHED = 70  # the child raised: its traceback is in the returned stderr


def run_forked(
    body: Callable[[], int | None], timeout: float = 60.0
) -> subprocess.CompletedProcess:
    """Run `body()` in a forked child (its stdout discarded, its stderr returned); the return code
    is `body`'s, or -N when signal N ended the child, as `subprocess.run` reports it. `timeout`
    only guards a hang (the child is then killed and the test fails)."""
    with tempfile.TemporaryFile("w+") as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns into the test runner
            code = EXIT_CRASHED
            try:
                os.dup2(err.fileno(), 2)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
                # the test runner's capturing objects stay behind: print to the new descriptors
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                if "torch" in sys.modules:  # no OpenMP pool survives a fork: one thread, inline
                    sys.modules["torch"].set_num_threads(1)
                code = body() or 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + timeout
        while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the forked child did not end within {timeout:g} s")
            time.sleep(0.005)
        status = waited[1]
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        err.seek(0)
        return subprocess.CompletedProcess([f"fork of {os.getpid()}"], code, "", err.read())
