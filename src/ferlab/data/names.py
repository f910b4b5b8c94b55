"""What people call a dataset: a model records where its data was on its trainer's disk
(`.data/ferplus`), which means nothing to anyone else and should not be shown to them."""

from __future__ import annotations

from pathlib import PurePath

KNOWN = {"ferplus": "FER+", "fer+": "FER+", "fer2013new": "FER+", "fer2013": "FER2013"}
"""Folder or file names (lower case, no suffix) of the datasets ferlab reads by layout."""


def dataset_name(location: str | PurePath | None) -> str | None:
    """FER+ or FER2013 for their usual folder and file names, else the last part of the path
    without its suffix (`/home/me/faces/lab.csv` -> `lab`); None when nothing was recorded."""
    if location is None or not str(location).strip():
        return None
    name = PurePath(str(location).replace("\\", "/").rstrip("/")).stem
    return KNOWN.get(name.lower(), name)
