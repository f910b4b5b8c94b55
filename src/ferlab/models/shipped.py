"""The models that ship inside the package, read from one table (`weights/models.json`).

Like timm's pretrained configs: a name maps to its weights file, its ONNX manifest, its
model card, its classes and input, its headline test figures and its license. The table
can be listed without loading any model (`ferlab models`), and names resolve the same way
in every command: a shipped name, a run folder or a `model.pt` file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ferlab.errors import FerlabError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
REGISTRY_FILE = WEIGHTS_DIR / "models.json"
DEFAULT_MODEL = "ferplus8-robust-40"
FAST_MODEL = "ferplus8-fast"
"""The live-video model (`webcam`, `video --fast`): distilled from ferplus8, faster than
`fer` per face at batch 1."""
MODEL_ENV = "FERLAB_MODEL"
"""Names the model every front end and `ferlab.load()` use when none is given: a shipped
name, a model.pt or a run folder."""


@dataclass(frozen=True)
class ShippedModel:
    name: str
    file: str
    """The `model.pt` bundle, relative to the package's weights folder."""
    manifest: str
    """Its ONNX manifest (ferlab.models.manifest), relative to the weights folder."""
    card: str
    description: str
    classes: tuple[str, ...]
    input: str
    test_set: str
    accuracy: float
    """Headline test accuracy in percent, as its model card states it."""
    macro_f1: float
    license: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def manifest_path(self) -> Path:
        return WEIGHTS_DIR / self.manifest

    @property
    def card_path(self) -> Path:
        return WEIGHTS_DIR / self.card


@cache
def shipped_models() -> dict[str, ShippedModel]:
    """Every shipped model by name, the default first."""
    try:
        table = json.loads(REGISTRY_FILE.read_text())
        models = {}
        for name, entry in table.items():
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
            models[name] = ShippedModel(name=name, **values)
    except (OSError, ValueError, TypeError) as exc:
        raise FerlabError(f"{REGISTRY_FILE}: the shipped-model table is unreadable ({exc}); reinstall ferlab") from None
    return models


def bundle_file(path: str | Path) -> Path:
    """The model file a user means: a run folder's model.pt, or the file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def default_model() -> str:
    """The model named by $FERLAB_MODEL, else the shipped default."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def resolve_model(name_or_path: str | Path | None = None) -> Path:
    """A model file from a path (model.pt or run folder) or the name of a shipped model
    (None: $FERLAB_MODEL, else the shipped default)."""
    reference = name_or_path or default_model()
    path = Path(reference).expanduser()
    if path.exists():
        return path
    shipped = shipped_models()
    if str(reference) in shipped:
        return shipped[str(reference)].path
    raise FerlabError(
        f"no model {str(reference)!r}: not a file or run folder, and not a shipped model "
        f"({', '.join(shipped) or 'none shipped'})"
    )


def shipped_name(name_or_path: str | Path | None) -> str | None:
    """The shipped model a reference means (None means the default), or None for a path."""
    reference = str(name_or_path or default_model())
    return reference if reference in shipped_models() and not Path(reference).exists() else None


def model_label(reference: str | Path | None, path: Path) -> str:
    """A short name for a resolved model: the shipped name, the run folder's name or the file's stem."""
    name = shipped_name(reference)
    if name is not None:
        return name
    if path.is_dir():
        return path.resolve().name
    return path.resolve().parent.name if path.name == "model.pt" else path.stem
