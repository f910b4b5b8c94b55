"""The models that ship inside the package, and what a model reference means.

`weights/models.json` maps each shipped name to its record (ferlab.models.record:
`onnx/<arch>-<digest>.json`, beside its ONNX exports), whose `files` name its weights
(`<name>.pt`) and model card (`<name>.md`); the table's other keys are copies of the records'
facts, generated with them. The table can be listed without loading any model or torch
(`ferlab models`), and a reference resolves the same way in every command (`resolve`): a
shipped name, a run folder, a `model.pt`, an ONNX export with its record beside it, or that
record itself. `A+B` names an ensemble of such references (`member_references`); the predictor
averages its members, and what needs one network (`resolve`) says so.

Adding a shipped model (scripts/write_shipped_records.py does the writing):
1. copy its `model.pt` to `weights/<name>.pt` and its card (`ferlab runs card`) to `weights/<name>.md`;
2. export it into `weights/onnx`: `ferlab export weights/<name>.pt --int8 --calibration DATA
   --out src/ferlab/weights/onnx` (fp32 and int8 files named by the weights' digest);
3. `python scripts/write_shipped_records.py --add <name> --description TEXT --license TEXT
   --test-set TEXT --accuracy PERCENT --macro-f1 F1`: writes its record, appends it to
   models.json and writes the facts block of its card; tests/test_records.py checks them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ferlab.errors import FerlabError
from ferlab.models.record import Headline, ModelRecord, file_sha256, record_beside

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
ONNX_DIR = WEIGHTS_DIR / "onnx"
REGISTRY_FILE = WEIGHTS_DIR / "models.json"
DEFAULT_MODEL = "ferplus8-robust-40"
FAST_MODEL = "ferplus8-fast"
"""The live-video model (`webcam`, `video --fast`): distilled from ferplus8, faster than
`fer` per face at batch 1."""
MODEL_ENV = "FERLAB_MODEL"
"""Names the model every front end and `ferlab.load()` use when none is given: a shipped
name, a model.pt or a run folder."""


@cache
def shipped_models() -> dict[str, ModelRecord]:
    """Every shipped model's record by name, the default first."""
    try:
        table = json.loads(REGISTRY_FILE.read_text())
        paths = {name: WEIGHTS_DIR / str(entry["record"]) for name, entry in table.items()}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise FerlabError(f"{REGISTRY_FILE}: the shipped-model table is unreadable ({exc}); reinstall ferlab") from None
    return {name: ModelRecord.load(path) for name, path in paths.items()}


def shipped_file(record: ModelRecord, role: str) -> Path:
    """A shipped model's file by its role: weights and card in the weights folder, exports in weights/onnx."""
    return (ONNX_DIR if role.startswith("onnx") else WEIGHTS_DIR) / record.files[role]


def bundle_file(path: str | Path) -> Path:
    """The model file a user means: a run folder's model.pt, or the file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def default_model() -> str:
    """The model named by $FERLAB_MODEL, else the shipped default."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


@dataclass(frozen=True)
class ResolvedModel:
    """What a model reference means, worked out once, at the edge: its record where one is
    readable without torch, its weights file where it has one, and where its exports are."""

    label: str
    """A short name: the shipped name, the run folder's name or the file's stem."""
    path: Path
    """The weights file or run folder, or the record or export named."""
    weights: Path | None
    """The `model.pt`; None for an export named by itself or its record."""
    record: ModelRecord | None
    """None for a model file: its record is inside it, and reading it needs torch."""
    exports: Path | None = None
    """The folder of a record named directly: its exports are looked for there first."""

    @property
    def export(self) -> Path | None:
        """The ONNX file named directly, which runs as it is."""
        return self.path if self.path.suffix == ".onnx" else None

    def weights_file(self) -> Path:
        """The `model.pt`, for what needs the network itself (evaluation, export, Grad-CAM)."""
        if self.weights is None:
            raise FerlabError(
                f"{self.path}: an ONNX export and its record run the model but hold no weights; "
                "this needs the model.pt it was exported from"
            )
        return self.weights


ENSEMBLE_SEPARATOR = "+"


def member_references(name_or_path: str | Path | None = None) -> list[str | Path]:
    """The models a reference names (None: $FERLAB_MODEL, else the shipped default): itself, or
    an ensemble's members (`A+B`). A `Path`, or a string that exists as a path, is never split,
    so a file whose name holds a '+' stays one model."""
    reference = name_or_path or default_model()
    if isinstance(reference, Path) or ENSEMBLE_SEPARATOR not in reference or Path(reference).expanduser().exists():
        return [reference]
    members = [member.strip() for member in reference.split(ENSEMBLE_SEPARATOR)]
    if not all(members):
        raise FerlabError(f"{reference!r}: an ensemble names its members as A+B, none of them empty")
    return list(members)


def resolve(name_or_path: str | Path | None = None) -> ResolvedModel:
    """A model reference (None: $FERLAB_MODEL, else the shipped default) resolved to its files
    and, where it is readable without torch, its record; a one-line error for anything else."""
    reference = name_or_path or default_model()
    path = Path(reference).expanduser()
    if path.exists():
        if path.suffix == ".onnx":
            record_path = record_beside(path)
            if not record_path.is_file():
                raise FerlabError(f"{path}: an ONNX export without its record {record_path.name} beside it")
            record = ModelRecord.load(record_path)
            return ResolvedModel(record.name or path.stem, path, None, record, path.parent)
        if path.suffix == ".json":
            record = ModelRecord.load(path)
            return ResolvedModel(record.name or path.stem, path, None, record, path.parent)
        return ResolvedModel(model_label(reference, path), path, bundle_file(path), None)
    shipped = shipped_models()
    if str(reference) in shipped:
        record = shipped[str(reference)]
        return ResolvedModel(str(reference), shipped_file(record, "weights"), shipped_file(record, "weights"), record)
    if len(member_references(reference)) > 1:
        raise FerlabError(
            f"{reference!r} is an ensemble: this needs one network, so name one of its members "
            "(an ensemble runs through the predictor: predict, video, webcam, serve, app)"
        )
    raise FerlabError(
        f"no model {str(reference)!r}: not a file or run folder, and not a shipped model "
        f"({', '.join(shipped) or 'none shipped'})"
    )


def resolve_model(name_or_path: str | Path | None = None) -> Path:
    """The weights file or run folder a reference names, for what needs the network itself."""
    resolved = resolve(name_or_path)
    resolved.weights_file()
    return resolved.path


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


def shipped_record(
    name: str, weights: ModelRecord, description: str, headline: Headline | None, license: str
) -> ModelRecord:
    """The record of shipped model `name`: what its weights file `weights/<name>.pt` says (its
    bundle's `current_record(...)` of that file), the facts that describe it, and its files as they
    are in the weights folder (exports found by the weights' digest)."""
    files, checksums = {"weights": f"{name}.pt", "card": f"{name}.md"}, {}
    for role, precision in (("onnx", "fp32"), ("onnx_int8", "int8")):
        export = ONNX_DIR / weights.onnx_name(precision)  # type: ignore[arg-type]
        if export.is_file():
            files[role], checksums[role] = export.name, file_sha256(export)
    return weights.with_facts(
        name=name, description=description, headline=headline, license=license, files=files, checksums=checksums
    )


def table_entry(record: ModelRecord) -> dict[str, Any]:
    """A models.json entry: where its record is, and copies of the record's facts for readers of the table."""
    headline = record.headline
    return {
        "file": record.files["weights"],
        "record": f"onnx/{record.file_name}",
        "card": record.files["card"],
        "description": record.description,
        "classes": list(record.classes),
        "input": record.input_text,
        "test_set": headline.test_set if headline else None,
        "accuracy": round(100 * headline.accuracy, 2) if headline else None,
        "macro_f1": headline.macro_f1 if headline else None,
        "license": record.license,
    }
