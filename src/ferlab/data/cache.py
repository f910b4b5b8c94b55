"""Where ferlab caches what it derives (decoded datasets, ONNX exports): never in the user's folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ferlab.errors import FerlabError, StorageError, is_storage_failure, storage_error

CACHE_ENV = "FERLAB_CACHE_DIR"
"""Moves the cache (default ~/.cache/ferlab)."""


def cache_root() -> Path:
    """$FERLAB_CACHE_DIR, or ~/.cache/ferlab; each kind of cached file has a folder in it."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ferlab")


@contextmanager
def writing_cache() -> Iterator[None]:
    """A failed write inside says that the place is ferlab's cache and how to move it: a
    read-only home or a full cache disk is the cache's problem, not the command's."""
    try:
        yield
    except (OSError, RuntimeError, StorageError) as exc:
        if not isinstance(exc, StorageError) and not is_storage_failure(exc):
            raise
        error = exc if isinstance(exc, StorageError) else storage_error(exc, cache_root())
        raise FerlabError(
            f"{error}; this is ferlab's cache: make it writable, or point {CACHE_ENV} at a writable folder"
        ) from None
