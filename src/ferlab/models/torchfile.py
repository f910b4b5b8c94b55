"""Reading files written with `torch.save` as data: tensors and plain values, never code.

Kept apart from `bundle` so that `pretrained` (which the model registry imports, and the
bundle imports the registry) reads weights files the same way without an import cycle.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ferlab.errors import FerlabError


def load_torch_file(path: Path, what: str, allow: Sequence[Any] = ()) -> Any:
    """`torch.load` with `weights_only=True`: tensors and plain values come back, code never runs.

    A file that names any other Python object (a pickled payload, a foreign checkpoint) is
    refused without unpickling it; `allow` admits a few exact harmless types on top. A cut
    short or damaged file is a one-line FerlabError too.
    """
    try:
        with torch.serialization.safe_globals(list(allow)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols: the error below says it
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message advises turning weights_only off: exactly what must not be done.
        text = str(exc)
        if _plain_pickle(path):  # pickle.dump's protocol 3-5 header; torch.save writes a zip (or protocol 2)
            raise FerlabError(
                f"{path}: not a {what}: a plain Python pickle, not a file saved with torch.save, "
                "and ferlab never unpickles those (it could run code)"
            ) from None
        if any(word in text for word in ("GLOBAL", "global", "Can only build", "allowlisted")):
            raise FerlabError(
                f"{path}: not a {what}: it holds Python objects other than tensors and plain "
                "values, and ferlab never loads those (unpickling them could run code)"
            ) from None
        raise FerlabError(f"{path}: not a readable {what} (damaged or cut short)") from None
    except Exception as exc:  # noqa: BLE001  (torch raises many types for foreign, empty or truncated files)
        reason = " ".join(str(exc).split())[:160]
        raise FerlabError(
            f"{path}: not a readable {what}, damaged or cut short "
            f"({type(exc).__name__}{': ' + reason if reason else ''})"
        ) from None


def _plain_pickle(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and head[1] >= 3
