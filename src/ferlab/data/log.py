"""The data layer's logger and its one way of reporting skipped input."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger("ferlab.data")


def warn_skipped(names: list[str], what: str, origin: Path | str, shown: int = 5) -> None:
    """One warning for all skipped items: how many, and the first few names."""
    if not names:
        return
    listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    logger.warning("skipped %d %s(s) in %s: %s", len(names), what, origin, listed)
