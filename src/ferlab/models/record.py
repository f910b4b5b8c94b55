"""A model's record: every fact about a finished model but its weights, in one place, without torch.

In the spirit of timm's per-weight `pretrained_cfg`: the architecture and its options, the
input (size, channels, normalisation), the label set, the calibration temperature, the
training class prior, the test-time augmentation it is served with, how it was trained
(`Training`), its headline test figures, its licence, and its files with their checksums. It is
written once, when a model is finished, and stored twice: inside the `model.pt` bundle
(`"record"`, beside the weights) and as the JSON beside its ONNX export (`<arch>-<weights
digest>.json`, which older ferlab versions called the ONNX manifest and still read). The
shipped table `weights/models.json` and the facts block of each shipped model card are
generated from the records (scripts/write_shipped_records.py), and a test fails when they
drift.

Everything that describes a model (`ferlab models`, the REST API's /v1/models, the web app)
reads a record, so none of them imports torch; the predictor runs a model's ONNX export from
its record alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from ferlab.errors import FerlabError
from ferlab.labels import LabelSet

RECORD_FORMAT = "ferlab-record/1"
READABLE_FORMATS = (RECORD_FORMAT, "ferlab-onnx/1")
"""`ferlab-onnx/1`: the ONNX manifests of older versions, a subset of a record's keys."""
OnnxPrecision = Literal["fp32", "int8"]
FILE_ROLES = ("weights", "onnx", "onnx_int8", "card")
"""What `ModelRecord.files` may name: the torch bundle, the ONNX exports and the model card."""
VALIDATION_KEYS = ("accuracy", "macro_f1", "ece_calibrated")
"""The validation figures a record quotes (a loss is not comparable across models)."""


@dataclass(frozen=True)
class Headline:
    """The test figures a model is quoted with (its card's, measured in float32 as served)."""

    test_set: str
    """What it was measured on, in words: `FER+ test (FER2013Test, majority labels, 3,137 faces)`."""
    accuracy: float
    """A fraction (0.8754), as every other metric in ferlab."""
    macro_f1: float

    @property
    def percent(self) -> str:
        return f"{100 * self.accuracy:.2f} %"


@dataclass(frozen=True)
class Training:
    """How the model was trained, as its run's config and metrics said: evaluation rebuilds its
    test split (`split_seed`), distillation checks its teacher and cards quote its hardware from
    the model itself, never by re-reading its run."""

    data_format: str = "auto"
    split_seed: int = 0
    """Seed that split a dataset without splits of its own: evaluation scores the same test images."""
    val_clean: str | None = None
    """The clean validation list the run selected on (`data.val_clean`), if any."""
    teacher: str | None = None
    distill_temperature: float | None = None
    distill_weight: float | None = None
    precision: str | None = None
    """`fp32`, `bf16 autocast` or `fp16 autocast`: how the training arithmetic ran."""
    device: str | None = None
    """`cpu`, `cuda`, `cuda:1`, `mps`: where it trained."""
    device_name: str | None = None
    world_size: int = 1
    """Processes (ranks) that trained it together."""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    """The run's metrics.json (best epoch's validation and test figures, time, threads) less the
    facts the record holds elsewhere."""


@dataclass(frozen=True)
class ModelRecord:
    """What a model is and how to feed it; the weights are in its files.

    The first block is what running it needs (the old ONNX manifest's keys, unchanged); the
    rest describes it. `files` maps a role of FILE_ROLES to a file name and `checksums` a role
    to its file's sha256.
    """

    arch: str
    label_set: str
    classes: tuple[str, ...]
    input_size: int
    in_channels: int
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    temperature: float
    class_prior: tuple[float, ...] | None
    """The training class prior (for `prior="uniform"`), None where the model does not record it."""
    weights_digest: str
    """sha256 of the weights' tensors (first 20 hex digits): the export's file names carry it."""
    source_sha256: str | None = None
    """sha256 of the `model.pt` file the export was made from: how a cached export is found for a
    model file without loading that file. None in the record inside that very file."""
    tta: str = "none"
    """Test-time augmentation the model is served with (none or flip)."""
    name: str | None = None
    """The shipped name, else the name of the run that trained it."""
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    """Every option of the architecture (`create_model(arch, len(classes), **arch_options)`)."""
    gradcam_layer: str | None = None
    """Dotted name of the submodule whose feature map Grad-CAM uses (`model.get_submodule(...)`);
    None in the records of older exports."""
    transfer: bool = False
    """An ImageNet-style backbone meant for transfer learning."""
    pretrained: str | None = None
    """Where the backbone's starting weights came from, or None."""
    description: str | None = None
    headline: Headline | None = None
    license: str | None = None
    run: str | None = None
    training_data: str | None = None
    """The training data path as the run's config gave it."""
    training: Training = field(default_factory=Training)
    files: Mapping[str, str] = field(default_factory=dict)
    checksums: Mapping[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> LabelSet:
        return LabelSet(self.label_set, self.classes)

    @property
    def validation(self) -> dict[str, float] | None:
        """The best epoch's validation figures (accuracy, macro_f1, ece_calibrated), if recorded."""
        val = self.training.metrics.get("val") or {}
        return {key: val[key] for key in VALIDATION_KEYS if key in val} or None

    @property
    def input_text(self) -> str:
        """`48x48 gray` or `224x224 RGB`."""
        return f"{self.input_size}x{self.input_size} {'gray' if self.in_channels == 1 else 'RGB'}"

    def onnx_name(self, precision: OnnxPrecision) -> str:
        """`<arch>-<weights digest>.onnx` (fp32) or `.int8.onnx`: a retrained model never reuses a stale file."""
        return f"{self.arch}-{self.weights_digest}" + (".int8.onnx" if precision == "int8" else ".onnx")

    @property
    def file_name(self) -> str:
        """The record's own file name beside its exports."""
        return f"{self.arch}-{self.weights_digest}.json"

    def with_facts(self, **facts: Any) -> ModelRecord:
        """A copy with some facts replaced (`name`, `description`, `headline`, `files`, ...)."""
        return replace(self, **facts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, the format first."""
        values = asdict(self)
        values["arch_options"] = dict(self.arch_options)
        values["training"]["metrics"] = dict(self.training.metrics)
        values["files"] = {role: self.files[role] for role in FILE_ROLES if role in self.files}
        values["checksums"] = {role: self.checksums[role] for role in FILE_ROLES if role in self.checksums}
        return {"format": RECORD_FORMAT, **values}

    @classmethod
    def from_dict(cls, data: Any, where: str = "model record") -> ModelRecord:
        """From `to_dict`'s values, or an older ONNX manifest's; a one-line error for anything else."""
        if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
            raise FerlabError(f"{where}: not a ferlab model record (expected format {RECORD_FORMAT})")
        values: dict[str, Any] = {}
        try:
            for item in fields(cls):
                if item.name not in data and (item.default is not MISSING or item.default_factory is not MISSING):
                    continue  # a field added later: an older record or manifest
                value = data[item.name]
                values[item.name] = tuple(value) if isinstance(value, list) else value
            if values.get("headline") is not None:
                values["headline"] = Headline(**values["headline"])
            if "training" in values:
                values["training"] = Training(**values["training"])
            elif data.get("validation"):  # a record of an older version: its figures were kept apart
                values["training"] = Training(metrics={"val": data["validation"]})
            record = cls(**values)
        except (KeyError, TypeError) as exc:
            raise FerlabError(f"{where}: a damaged ferlab model record ({type(exc).__name__}: {exc})") from None
        if record.class_prior is not None and len(record.class_prior) != record.num_classes:
            raise FerlabError(f"{where}: its class prior does not fit its {record.num_classes} classes")
        unknown = set(record.files) - set(FILE_ROLES)
        if unknown:
            raise FerlabError(f"{where}: unknown file roles {sorted(unknown)}; known: {', '.join(FILE_ROLES)}")
        return record

    def save(self, folder: Path, file_name: str | None = None) -> Path:
        """Write `<arch>-<digest>.json` (or `file_name`, beside an export named otherwise) in
        `folder` atomically (readable by all); returns its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (file_name or self.file_name)
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".json.tmp", delete=False, encoding="utf-8") as out:
            out.write(text)
        os.chmod(out.name, 0o644)
        os.replace(out.name, path)
        return path

    @classmethod
    def load(cls, path: Path) -> ModelRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FerlabError(f"{path}: not a readable ferlab model record ({type(exc).__name__})") from None
        return cls.from_dict(data, str(path))


def record_beside(export: Path) -> Path:
    """The record of an ONNX export: `<stem>.json` beside `<stem>.onnx` and `<stem>.int8.onnx`."""
    return export.with_name(export.name.removesuffix(".onnx").removesuffix(".int8") + ".json")


def weights_digest(state_dict: Mapping[str, Any]) -> str:
    """sha256 over a state dict's names and tensor bytes (first 20 hex digits), without importing torch."""
    digest = hashlib.sha256()
    for key, value in state_dict.items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:20]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_record(source: Path, folders: list[Path]) -> tuple[ModelRecord, Path] | None:
    """The record (and its folder) of an export made from the model file `source`, if any."""
    source_digest = file_sha256(source)
    for folder in folders:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            try:
                record = ModelRecord.load(path)
            except FerlabError:
                continue  # a foreign or damaged json in the cache is not ours to fail on
            if record.source_sha256 == source_digest:
                return record, folder
    return None


FACTS_BEGIN = "<!-- facts: generated from the model's record (scripts/write_shipped_records.py); do not edit -->"
FACTS_END = "<!-- /facts -->"


def card_facts(record: ModelRecord) -> str:
    """The facts block of a model card, written from the record alone (so the two cannot disagree)."""
    mean = ", ".join(f"{v:g}" for v in record.input_mean)
    std = ", ".join(f"{v:g}" for v in record.input_std)
    lines = [
        FACTS_BEGIN,
        f"- Name: `{record.name}`" + (f"; licence: {record.license}" if record.license else ""),
        f"- Architecture: `{record.arch}` {dict(record.arch_options)}",
        f"- Input: {record.input_text}, pixels scaled to [0, 1] then normalised by mean ({mean}) and std ({std})",
        f"- Classes ({record.num_classes}, label set `{record.label_set}`): {', '.join(record.classes)}",
        f"- Calibration temperature {record.temperature:.3f}; served with test-time augmentation "
        f"`{record.tta}`; training class prior " + ("recorded" if record.class_prior is not None else "not recorded"),
    ]
    if record.headline is not None:
        h = record.headline
        lines.append(f"- Headline: accuracy {h.percent}, macro-F1 {h.macro_f1:.3f} on {h.test_set}")
    for role in FILE_ROLES:
        if role in record.files:
            checksum = record.checksums.get(role) or (record.source_sha256 if role == "weights" else None)
            lines.append(f"- File ({role}): `{record.files[role]}`" + (f", sha256 {checksum}" if checksum else ""))
    return "\n".join([*lines, FACTS_END])


def with_card_facts(card_text: str, record: ModelRecord) -> str:
    """`card_text` with its facts block replaced by the record's (inserted under the title if absent)."""
    block = card_facts(record)
    if FACTS_BEGIN in card_text and FACTS_END in card_text:
        before, rest = card_text.split(FACTS_BEGIN, 1)
        return before + block + rest.split(FACTS_END, 1)[1]
    title, _, body = card_text.partition("\n")
    return f"{title}\n\n{block}\n{body}"


def card_facts_of(card_text: str) -> str | None:
    """The facts block a card holds, or None."""
    if FACTS_BEGIN not in card_text or FACTS_END not in card_text:
        return None
    return FACTS_BEGIN + card_text.split(FACTS_BEGIN, 1)[1].split(FACTS_END, 1)[0] + FACTS_END
