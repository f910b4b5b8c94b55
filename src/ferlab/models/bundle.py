"""The trained-model file (`model.pt`): weights plus everything needed to use them.

A bundle is what the trainer hands to the evaluator, the predictor and the exporters:
architecture name and options, label set, input preprocessing and the calibration
temperature. Loading it never needs the training config or the dataset.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from ferlab.errors import FerlabError, is_storage_failure, storage_error
from ferlab.labels import LabelSet
from ferlab.models.base import FerModel, ModelSpec
from ferlab.models.record import Headline, ModelRecord, weights_digest
from ferlab.models.registry import create_model
from ferlab.models.shipped import bundle_file
from ferlab.models.torchfile import load_torch_file

BUNDLE_FORMAT = "ferlab-model/1"
"""Unchanged by BundleInfo and the record: both are saved as plain dicts (`info`, `record`), which
older versions ignore and which files written before them lack."""
VALIDATION_KEYS = ("accuracy", "macro_f1", "ece_calibrated")
"""The validation figures a record keeps (a loss is not comparable across models)."""


@dataclass
class BundleInfo:
    """What a model file records about how it was made: data options, training recipe, results.

    Stored in `model.pt` as a dict of plain values (the file loads with `weights_only=True`),
    so evaluation, cards and apps learn a model's split seed or class prior from the model
    itself, never by re-reading its run's config. The classes come from the bundle's label
    set and the calibration temperature from `ModelBundle.temperature`.
    """

    run: str | None = None
    """Name of the run that trained the model."""
    data: str | None = None
    """The training data path as the config gave it."""
    data_format: str = "auto"
    split_seed: int = 0
    """Seed that split a dataset without splits of its own: evaluation scores the same test images."""
    val_clean: str | None = None
    """The clean validation list the run selected on (`data.val_clean`), if any."""
    teacher: str | None = None
    distill_temperature: float | None = None
    distill_weight: float | None = None
    class_prior: list[float] | None = None
    """Mean training target per class (for `prior="uniform"`); None in models trained before it."""
    tta: str = "none"
    """Test-time augmentation the model is served with (`train.tta`): none or flip."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """The run's metrics.json (validation and test figures of the best epoch, time, precision)."""
    precision: str | None = None
    """`fp32`, `bf16 autocast` or `fp16 autocast`: how the training arithmetic ran."""
    device: str | None = None
    """`cpu`, `cuda`, `cuda:1`, `mps`: where it trained."""
    device_name: str | None = None
    world_size: int = 1
    """Processes (ranks) that trained it together."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of an `info` dict this version does not know, kept as they were."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values only; `extra` keys go back beside the known ones."""
        values = asdict(self)
        extra = values.pop("extra")
        return {**extra, **values}

    def get(self, key: str, default: Any = None) -> Any:
        """Read access by the old `info` dict's keys, for code written against it (prefer the
        attributes): a field that is None, or a key this info lacks, gives `default`."""
        value = self.to_dict().get(key)
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        values = self.to_dict()
        if values.get(key) is None:
            raise KeyError(key)
        return values[key]

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> BundleInfo:
        """From a saved `info` dict, this version's or an older one (any key may be missing)."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)} - {"extra"}
        info = cls(**{k: values.pop(k) for k in list(values) if k in known}, extra=values)
        metrics = info.metrics or {}
        if info.precision is None and "precision" in metrics:
            info.precision = metrics["precision"]
        return info


@dataclass
class ModelBundle:
    model: FerModel
    label_set: LabelSet
    temperature: float = 1.0
    """Softmax temperature fitted on validation data (1.0 = uncalibrated)."""
    info: BundleInfo = field(default_factory=BundleInfo)
    """Provenance and data options: run, dataset, split seed, metrics, class prior, device."""
    stored_record: ModelRecord | None = None
    """The record the file was saved with (None in files written before records): its descriptive
    facts (shipped name, description, headline, licence, files) are kept by `record()`."""

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    def record(self, source_sha256: str | None = None) -> ModelRecord:
        """This model's record: what running it needs from the weights, label set, temperature
        and info, and what describes it from the stored record (else from its run). `source_sha256`:
        the sha256 of the file it was loaded from, for the record beside an export of it."""
        spec, info = self.spec, self.info
        metrics = info.metrics or {}
        validation = {k: v for k, v in (metrics.get("val") or {}).items() if k in VALIDATION_KEYS}
        test = metrics.get("test") or {}
        headline = None
        if "accuracy" in test and "macro_f1" in test:
            where = f"the test split of {info.data}" if info.data else "its run's test split"
            headline = Headline(f"{where}, measured by the trainer", test["accuracy"], test["macro_f1"])
        prior = info.class_prior
        record = ModelRecord(
            arch=spec.name,
            label_set=self.label_set.name,
            classes=tuple(self.label_set.classes),
            input_size=spec.input_size,
            in_channels=spec.in_channels,
            input_mean=tuple(float(v) for v in spec.input_mean),
            input_std=tuple(float(v) for v in spec.input_std),
            temperature=float(self.temperature),
            class_prior=None if prior is None else tuple(float(v) for v in prior),
            weights_digest=weights_digest(self.model.state_dict()),
            source_sha256=source_sha256,
            tta=info.tta,
            name=info.run,
            arch_options=dict(spec.config),
            headline=headline,
            run=info.run,
            training_data=info.data,
            validation=validation or None,
        )
        stored = self.stored_record
        if stored is None:
            return record
        return record.with_facts(
            name=stored.name or record.name,
            description=stored.description,
            headline=stored.headline or record.headline,
            license=stored.license,
            files=stored.files,
            checksums=stored.checksums,
        )


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and a rename, so a kill never leaves half a file; a
    failed write (a full disk: torch says so with a RuntimeError) is one line naming `path`."""
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            temporary = Path(handle.name)
            torch.save(obj, handle)
        os.replace(temporary, path)
    except BaseException as exc:  # Ctrl-C included: leave no half-written .tmp behind
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        if is_storage_failure(exc):
            raise storage_error(exc, path) from None
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the `tmp*.tmp` files an `atomic_save` killed mid-write (kill -9, power cut) left in `folder`."""
    removed = []
    for stale in folder.glob("tmp*.tmp") if folder.is_dir() else ():
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def save_bundle(bundle: ModelBundle, path: Path) -> None:
    spec = asdict(bundle.model.spec)
    atomic_save(
        {
            "format": BUNDLE_FORMAT,
            "spec": spec,
            "state_dict": bundle.model.state_dict(),
            "label_set": {"name": bundle.label_set.name, "classes": list(bundle.label_set.classes)},
            "temperature": float(bundle.temperature),
            "info": bundle.info.to_dict(),
            "record": bundle.record().to_dict(),
        },
        path,
    )


def load_bundle(path: str | Path) -> ModelBundle:
    """Rebuild a model from its bundle file; a clear error for anything that is not one."""
    path = bundle_file(path)
    if not path.is_file():
        raise FerlabError(f"{path}: no such model file (train one with `ferlab train`)")
    data = load_torch_file(path, "ferlab model")
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise FerlabError(f"{path}: not a ferlab model file (expected format {BUNDLE_FORMAT})")
    try:
        spec_values = data["spec"]
        model = create_model(spec_values["name"], spec_values["num_classes"], **spec_values["config"])
        model.load_state_dict(data["state_dict"])
        model.spec = replace(model.spec, pretrained=spec_values.get("pretrained"))
        model.eval()
        labels = data["label_set"]
        return ModelBundle(
            model=model,
            label_set=LabelSet(labels["name"], tuple(labels["classes"])),
            temperature=float(data.get("temperature", 1.0)),
            info=_info_of(data.get("info"), path),
            stored_record=None if data.get("record") is None else ModelRecord.from_dict(data["record"], str(path)),
        )
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise FerlabError(f"{path}: a damaged ferlab model file ({type(exc).__name__}: {reason})") from None


def _info_of(saved: Any, path: Path) -> BundleInfo:
    """The saved `info` dict as a BundleInfo. A model written before BundleInfo existed has no
    `split_seed`: when it sits in a run folder, its `config.yaml` says (read once, here, as
    plain YAML, so that no other layer ever re-reads a run's config)."""
    if isinstance(saved, BundleInfo):
        return saved
    if saved is not None and not isinstance(saved, dict):
        raise TypeError(f"info is a {type(saved).__name__}, not a dict")
    info = BundleInfo.from_dict(saved)
    if saved is not None and "split_seed" not in saved and (path.parent / "config.yaml").is_file():
        info = _with_run_config(info, path.parent / "config.yaml")
    return info


def _with_run_config(info: BundleInfo, config_file: Path) -> BundleInfo:
    import yaml

    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        data, train = config.get("data") or {}, config.get("train") or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return info  # a damaged config: the defaults stand, as for a bare model file
    teacher = train.get("teacher")
    return replace(
        info,
        data_format=str(data.get("format", info.data_format)),
        split_seed=int(data.get("split_seed", info.split_seed) or 0),
        val_clean=data.get("val_clean", info.val_clean),
        teacher=teacher,
        distill_temperature=train.get("distill_temperature") if teacher else None,
        distill_weight=train.get("distill_weight") if teacher else None,
    )
