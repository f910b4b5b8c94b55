"""Where ferlab caches what it derives (decoded datasets, ONNX exports): never in the user's folders."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FERLAB_CACHE_DIR"
"""Moves the cache (default ~/.cache/ferlab)."""


def cache_root() -> Path:
    """$FERLAB_CACHE_DIR, or ~/.cache/ferlab; each kind of cached file has a folder in it."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ferlab")
