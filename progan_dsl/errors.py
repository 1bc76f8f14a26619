"""User-facing errors: anything the user can fix (bad spec, bad path, bad option).

The CLIs print these without a traceback and exit with code 2. Internal bugs stay ordinary
exceptions so they keep their tracebacks.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """An error caused by user input; `str(err)` is the whole message shown to the user."""
