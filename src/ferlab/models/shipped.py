"""The models that ship inside the package: `weights/models.json` maps a name to its files.

Each shipped model has a weights file (`<name>.pt`), a model card (`<name>.md`) and a record
(ferlab.models.record: `onnx/<arch>-<digest>.json`, beside its ONNX exports) that says what it
is. The table can be listed without loading any model or torch (`ferlab models`), and names
resolve the same way in every command: a shipped name, a run folder or a `model.pt` file.

Adding a shipped model (scripts/write_shipped_manifests.py does the writing):
1. copy its `model.pt` to `weights/<name>.pt` and its card (`ferlab runs card`) to `weights/<name>.md`;
2. export it into `weights/onnx`: `ferlab export weights/<name>.pt --int8 --calibration DATA
   --out src/ferlab/weights/onnx` (fp32 and int8 files named by the weights' digest);
3. `python scripts/write_shipped_manifests.py --add <name> --description TEXT --license TEXT
   --test-set TEXT --accuracy PERCENT --macro-f1 F1`: writes its record, appends it to
   models.json and writes the facts block of its card; tests/test_records.py checks them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from ferlab.errors import FerlabError
from ferlab.models.record import Headline, ModelRecord, file_sha256

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
    """Where a shipped model's files are; what it is comes from its record (ferlab.models.record)."""

    name: str
    file: str
    """The `model.pt` bundle, relative to the package's weights folder."""
    manifest: str
    """Its record, the JSON beside its ONNX exports, relative to the weights folder."""
    card: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def manifest_path(self) -> Path:
        return WEIGHTS_DIR / self.manifest

    @property
    def card_path(self) -> Path:
        return WEIGHTS_DIR / self.card

    @cached_property
    def record(self) -> ModelRecord:
        return ModelRecord.load(self.manifest_path)

    # What `ferlab models` lists, read from the record (the names models.json has always had).
    description = property(lambda self: self.record.description or "")
    classes = property(lambda self: self.record.classes)
    input = property(lambda self: self.record.input_text)
    license = property(lambda self: self.record.license or "")
    test_set = property(lambda self: self.record.headline.test_set if self.record.headline else "")
    accuracy = property(lambda self: 100 * self.record.headline.accuracy if self.record.headline else float("nan"))
    """Headline test accuracy in percent."""
    macro_f1 = property(lambda self: self.record.headline.macro_f1 if self.record.headline else float("nan"))


TABLE_KEYS = ("file", "manifest", "card")
"""What shipped_models() reads from each models.json entry; the entry's other keys are copies of
its record's facts, for readers of the table (scripts/write_shipped_manifests.py writes them)."""


@cache
def shipped_models() -> dict[str, ShippedModel]:
    """Every shipped model by name, the default first."""
    try:
        table = json.loads(REGISTRY_FILE.read_text())
        models = {name: ShippedModel(name, *(str(entry[key]) for key in TABLE_KEYS)) for name, entry in table.items()}
    except (OSError, ValueError, TypeError, KeyError) as exc:
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


ONNX_DIR = WEIGHTS_DIR / "onnx"


def shipped_record(
    entry: ShippedModel, weights: ModelRecord, description: str, headline: Headline | None, license: str
) -> ModelRecord:
    """The record of a shipped model: what its weights file says (`weights`, its bundle's
    `record(file_sha256(entry.path))`), the facts that describe it, and its files as they are in
    the weights folder (exports found by the weights' digest)."""
    record = weights
    files, checksums = {"weights": entry.file, "card": entry.card}, {}
    for role, precision in (("onnx", "fp32"), ("onnx_int8", "int8")):
        export = ONNX_DIR / record.onnx_name(precision)  # type: ignore[arg-type]
        if export.is_file():
            files[role], checksums[role] = export.name, file_sha256(export)
    return record.with_facts(
        name=entry.name, description=description, headline=headline, license=license, files=files, checksums=checksums
    )


def table_entry(entry: ShippedModel, record: ModelRecord) -> dict[str, Any]:
    """A models.json entry: where the files are, and a copy of the record's facts for its readers."""
    headline = record.headline
    return {
        "file": entry.file,
        "manifest": f"onnx/{record.file_name}",
        "card": entry.card,
        "description": record.description,
        "classes": list(record.classes),
        "input": record.input_text,
        "test_set": headline.test_set if headline else None,
        "accuracy": round(100 * headline.accuracy, 2) if headline else None,
        "macro_f1": headline.macro_f1 if headline else None,
        "license": record.license,
    }
