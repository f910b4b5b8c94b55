"""The one exception type for problems a user can fix (bad path, bad file, bad option).

Front ends print its message as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable


class FerlabError(Exception):
    """A user-facing error whose message says what went wrong and what to do."""


def run_script(main: Callable[[], int]) -> None:
    """Exit with `main()`'s status; a FerlabError is one line on stderr and status 2, as in the CLI."""
    import sys

    try:
        sys.exit(main())
    except FerlabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
