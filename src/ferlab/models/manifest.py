"""What running an exported model needs, without torch: the JSON manifest next to its ONNX files.

A `model.pt` bundle can only be read with torch, which takes about two seconds to import.
An ONNX export runs on ONNX Runtime alone, so its manifest carries what the predictor would
otherwise load the bundle to learn: the classes, the input size and normalisation, the
calibration temperature and the training class prior. `ferlab export` writes it next to the
`.onnx` files; the shipped models' manifests live in the package's `weights/onnx/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ferlab.errors import FerlabError

if TYPE_CHECKING:
    from ferlab.models.bundle import ModelBundle

MANIFEST_FORMAT = "ferlab-onnx/1"
OnnxPrecision = Literal["fp32", "int8"]


@dataclass(frozen=True)
class ModelManifest:
    """A model's interface: everything but its weights (which are in the ONNX file)."""

    arch: str
    label_set: str
    classes: tuple[str, ...]
    input_size: int
    in_channels: int
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    temperature: float
    class_prior: tuple[float, ...] | None
    """The training class prior (for `prior="uniform"`), None where the bundle does not record it."""
    weights_digest: str
    """sha256 of the weights (first 20 hex digits): the export's file names carry it."""
    source_sha256: str
    """sha256 of the `model.pt` file the export was made from: how a cached export is found
    for a model file without loading that file."""
    tta: str = "none"
    """Test-time augmentation the model is served with (none or flip); absent in older manifests."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def onnx_name(self, precision: OnnxPrecision) -> str:
        """`<arch>-<weights digest>.onnx` (fp32) or `.int8.onnx`: a retrained model never reuses a stale file."""
        return onnx_file_name(self.arch, self.weights_digest, precision)

    @property
    def file_name(self) -> str:
        return f"{self.arch}-{self.weights_digest}.json"

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, source_sha256: str, weights_digest: str) -> ModelManifest:
        spec = bundle.spec
        prior = bundle.info.get("class_prior")
        return cls(
            arch=spec.name,
            label_set=bundle.label_set.name,
            classes=tuple(bundle.label_set.classes),
            input_size=spec.input_size,
            in_channels=spec.in_channels,
            input_mean=tuple(float(v) for v in spec.input_mean),
            input_std=tuple(float(v) for v in spec.input_std),
            temperature=float(bundle.temperature),
            class_prior=None if prior is None else tuple(float(v) for v in prior),
            weights_digest=weights_digest,
            source_sha256=source_sha256,
            tta=bundle.info.tta,
        )

    def save(self, folder: Path) -> Path:
        """Write `<arch>-<digest>.json` in `folder` atomically; returns its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.file_name
        text = json.dumps({"format": MANIFEST_FORMAT, **asdict(self)}, indent=2) + "\n"
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".json.tmp", delete=False) as handle:
            handle.write(text)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
        return path

    @classmethod
    def load(cls, path: Path) -> ModelManifest:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FerlabError(f"{path}: not a readable ferlab ONNX manifest ({type(exc).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise FerlabError(f"{path}: not a ferlab ONNX manifest (expected format {MANIFEST_FORMAT})")
        values: dict[str, Any] = {}
        try:
            for item in fields(cls):
                if item.name not in data and item.default is not MISSING:
                    continue  # a field added later, with a default: an older manifest
                value = data[item.name]
                values[item.name] = tuple(value) if isinstance(value, list) else value
            manifest = cls(**values)
        except (KeyError, TypeError) as exc:
            raise FerlabError(f"{path}: a damaged ferlab ONNX manifest ({type(exc).__name__}: {exc})") from None
        if manifest.class_prior is not None and len(manifest.class_prior) != manifest.num_classes:
            raise FerlabError(f"{path}: its class prior does not fit its {manifest.num_classes} classes")
        return manifest


def onnx_file_name(arch: str, weights_digest: str, precision: OnnxPrecision) -> str:
    return f"{arch}-{weights_digest}" + (".int8.onnx" if precision == "int8" else ".onnx")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_manifest(source: Path, folders: list[Path]) -> tuple[ModelManifest, Path] | None:
    """The manifest (and its folder) of an export made from the model file `source`, if any."""
    source_digest = file_sha256(source)
    for folder in folders:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            try:
                manifest = ModelManifest.load(path)
            except FerlabError:
                continue  # a foreign or damaged json in the cache is not ours to fail on
            if manifest.source_sha256 == source_digest:
                return manifest, folder
    return None
