"""The trained-model file (`model.pt`): weights plus the model's record.

A bundle is what the trainer hands to the evaluator, the predictor and the exporters: the
network and its record (ferlab.models.record), which says what it is, how to feed it and how
it was made. Loading it never needs the training config or the dataset.

A two-head run (`data.second_labels`) also keeps its second head in the file, apart from the
weights (`second_head`: its label set, training prior and state dict): the file loads, in this
version and older ones, as the one-head model its record describes, and `split_heads` makes the
second head a model of its own.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ferlab.errors import FerlabError, is_storage_failure, storage_error
from ferlab.labels import LabelSet
from ferlab.models.base import FerModel
from ferlab.models.record import Headline, ModelRecord, Training, file_sha256, weights_digest
from ferlab.models.registry import create_model
from ferlab.models.shipped import bundle_file
from ferlab.models.torchfile import load_torch_file

BUNDLE_FORMAT = "ferlab-model/2"
"""The weights and the record (`record`, a dict of plain values: the file loads with `weights_only=True`)."""
OLD_BUNDLE_FORMAT = "ferlab-model/1"
"""Files of older versions: `spec`, `label_set`, `temperature` and `info` dicts (and, in the
last of them, a `record` of the descriptive facts); `load_bundle` converts them."""
KEPT_APART = ("label_set", "classes", "temperature", "precision", "device", "device_name")
"""metrics.json keys the record holds as facts of their own, so `Training.metrics` drops them."""


@dataclass(frozen=True)
class SecondHead:
    """The second head of a two-head model: what it predicts and its weights (the keys of the
    architecture's `head`), kept beside the one-head model's weights."""

    labels: LabelSet
    state_dict: dict[str, torch.Tensor]
    class_prior: tuple[float, ...] | None = None
    """The prior of its labels over the training images that had one."""

    def to_dict(self) -> dict[str, Any]:
        prior = None if self.class_prior is None else list(self.class_prior)
        return {
            "label_set": self.labels.name,
            "classes": list(self.labels.classes),
            "class_prior": prior,
            "state_dict": self.state_dict,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SecondHead:
        prior = data.get("class_prior")
        labels = LabelSet(data["label_set"], tuple(data["classes"]))
        return cls(labels, dict(data["state_dict"]), None if prior is None else tuple(float(p) for p in prior))


@dataclass
class ModelBundle:
    model: FerModel
    record: ModelRecord
    second: SecondHead | None = None
    """A two-head run's second head (not part of `model`, whose forward is the first head's)."""

    @classmethod
    def of(cls, model: FerModel, label_set: LabelSet, temperature: float = 1.0, **facts: Any) -> ModelBundle:
        """A bundle of a network just made or trained: its record from the model's declared facts,
        the label set it predicts and `facts` (run, training, headline, ...)."""
        record = ModelRecord(
            arch=model.arch,
            label_set=label_set.name,
            classes=tuple(label_set.classes),
            input_size=model.input_size,
            in_channels=model.in_channels,
            input_mean=tuple(float(v) for v in model.input_mean),
            input_std=tuple(float(v) for v in model.input_std),
            temperature=float(temperature),
            class_prior=None,
            weights_digest=weights_digest(model.primary_state_dict()),
            arch_options=dict(model.arch_options),
            gradcam_layer=model.gradcam_layer,
            transfer=model.transfer,
            pretrained=model.pretrained,
        )
        return cls(model, record.with_facts(**facts))

    def current_record(self, source: Path | None = None) -> ModelRecord:
        """The record with the digest of the weights as they are now (a bundle's network may have
        been trained on since) and, with `source`, the sha256 of the file it was loaded from (for
        the record beside an export of that file)."""
        return self.record.with_facts(
            weights_digest=weights_digest(self.model.primary_state_dict()),
            source_sha256=None if source is None else file_sha256(source),
        )


def training_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics.json as `Training.metrics` keeps it."""
    return {key: value for key, value in metrics.items() if key not in KEPT_APART}


def trainer_headline(data: str | None, metrics: dict[str, Any]) -> Headline | None:
    """The test figures the trainer measured, for a model that has no card's headline."""
    test = metrics.get("test") or {}
    if "accuracy" not in test or "macro_f1" not in test:
        return None
    where = f"the test split of {data}" if data else "its run's test split"
    return Headline(f"{where}, measured by the trainer", test["accuracy"], test["macro_f1"])


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
    record = bundle.current_record()
    saved = {"format": BUNDLE_FORMAT, "record": record.to_dict(), "state_dict": bundle.model.primary_state_dict()}
    if bundle.second is not None:
        saved["second_head"] = bundle.second.to_dict()
    atomic_save(saved, path)


def load_bundle(path: str | Path) -> ModelBundle:
    """Rebuild a model from its bundle file, an older version's converted; a clear error for
    anything that is not one."""
    path = bundle_file(path)
    if not path.is_file():
        raise FerlabError(f"{path}: no such model file (train one with `ferlab train`)")
    data = load_torch_file(path, "ferlab model")
    if not isinstance(data, dict) or data.get("format") not in (BUNDLE_FORMAT, OLD_BUNDLE_FORMAT):
        raise FerlabError(f"{path}: not a ferlab model file (expected format {BUNDLE_FORMAT})")
    try:
        if data["format"] == OLD_BUNDLE_FORMAT:
            record = _converted(data, path)
        else:
            record = ModelRecord.from_dict(data["record"], str(path))
        model = create_model(record.arch, record.num_classes, **record.arch_options)
        model.load_state_dict(data["state_dict"])
        model.pretrained = record.pretrained
        model.eval()
        second = SecondHead.from_dict(data["second_head"]) if data.get("second_head") is not None else None
        return ModelBundle(model, record, second)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise FerlabError(f"{path}: a damaged ferlab model file ({type(exc).__name__}: {reason})") from None


def split_heads(bundle: ModelBundle) -> tuple[ModelBundle, ModelBundle]:
    """A two-head model as two plain ones on copies of its backbone: (the first head's model, as
    the file serves it; the second head's, with its own label set and record).

    The second model's record says which run it came from and that its temperature is 1.0, not
    fitted (the run fitted only the first head's); its test figures are not the first head's, so
    it quotes none."""
    if bundle.second is None:
        raise FerlabError(
            f"{bundle.record.name or 'this model'} has one head: only a run with data.second_labels has a second"
        )
    primary = copy.deepcopy(bundle.model)
    primary.second_head = None
    second, record = bundle.second, bundle.record
    model = create_model(record.arch, len(second.labels), **record.arch_options)
    backbone = {k: v for k, v in primary.state_dict().items() if not k.startswith("head.")}
    try:
        model.load_state_dict({**backbone, **{f"head.{k}": v for k, v in second.state_dict.items()}})
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:160]
        raise FerlabError(f"{record.name or 'this model'}: a damaged second head ({reason})") from None
    model.pretrained = record.pretrained
    model.eval()
    run = record.run or record.name or "a two-head run"
    split = ModelBundle.of(
        model,
        second.labels,
        1.0,
        class_prior=second.class_prior,
        tta=record.tta,
        name=f"{record.name or run}-{second.labels.name}",
        description=(
            f"the {second.labels.name} head of the two-head run {run} (beside its {record.label_set} head, "
            "on the same backbone); temperature 1.0, not fitted"
        ),
        run=record.run,
        training_data=record.training_data,
        training=replace(record.training, metrics={"two_head_run": run, "head": "second"}),
    )
    return ModelBundle(primary, record), split


def write_second_head(model: str | Path, out: str | Path | None = None) -> tuple[Path, ModelRecord]:
    """Write the second head of the two-head model file `model` as a plain model file (`ferlab
    export --head second`): `out` is a `.pt` file or a folder for its model.pt (default: a folder
    in the working directory named as the new model). Returns the file and its record."""
    source = bundle_file(model)
    _, second = split_heads(load_bundle(source))
    target = Path(out) if out is not None else Path(second.record.name or "second-head")
    if target.suffix != ".pt":
        target = target / "model.pt"
    if target.resolve() == source.resolve():
        raise FerlabError(f"{target}: that is the two-head model itself; write the second head elsewhere")
    save_bundle(second, target)
    return target, second.record


def _converted(data: dict[str, Any], path: Path) -> ModelRecord:
    """The record of an older version's file, made once from its `spec`, `label_set`,
    `temperature` and `info` dicts; the descriptive facts of the `record` the last of those
    versions stored (shipped name, description, headline, licence, files) are kept."""
    spec, labels, info = data["spec"], data["label_set"], data.get("info")
    if info is not None and not isinstance(info, dict):
        raise TypeError(f"info is a {type(info).__name__}, not a dict")
    info = dict(info or {})
    if info and "split_seed" not in info and (path.parent / "config.yaml").is_file():
        config = _run_config(path.parent / "config.yaml")  # written before the split seed was kept
        info.update({key: value for key, value in config.items() if value is not None})
    metrics = dict(info.get("metrics") or {})
    stored = None if data.get("record") is None else ModelRecord.from_dict(data["record"], str(path))
    prior = info.get("class_prior")
    teacher = info.get("teacher")
    return ModelRecord(
        arch=spec["name"],
        label_set=labels["name"],
        classes=tuple(labels["classes"]),
        input_size=spec["input_size"],
        in_channels=spec["in_channels"],
        input_mean=tuple(float(v) for v in spec["input_mean"]),
        input_std=tuple(float(v) for v in spec["input_std"]),
        temperature=float(data.get("temperature", 1.0)),
        class_prior=None if prior is None else tuple(float(v) for v in prior),
        weights_digest=weights_digest(data["state_dict"]),
        tta=info.get("tta") or "none",
        name=(stored.name if stored else None) or info.get("run"),
        arch_options=dict(spec["config"]),
        gradcam_layer=spec["gradcam_layer"],
        transfer=bool(spec.get("transfer", False)),
        pretrained=spec.get("pretrained"),
        description=stored.description if stored else None,
        headline=(stored.headline if stored else None) or trainer_headline(info.get("data"), metrics),
        license=stored.license if stored else None,
        run=info.get("run"),
        training_data=info.get("data"),
        training=Training(
            data_format=str(info.get("data_format") or "auto"),
            split_seed=int(info.get("split_seed") or 0),
            val_clean=info.get("val_clean"),
            teacher=teacher,
            distill_temperature=info.get("distill_temperature") if teacher else None,
            distill_weight=info.get("distill_weight") if teacher else None,
            precision=info.get("precision") or metrics.get("precision"),
            device=info.get("device"),
            device_name=info.get("device_name"),
            world_size=int(info.get("world_size") or 1),
            metrics=training_metrics(metrics),
        ),
        files=stored.files if stored else {},
        checksums=stored.checksums if stored else {},
    )


def _run_config(config_file: Path) -> dict[str, Any]:
    """The data and distillation options of a run's `config.yaml`, read once, here, as plain
    YAML, so that no other layer ever re-reads a run's config; a damaged config gives none."""
    import yaml

    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        data, train = config.get("data") or {}, config.get("train") or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return {}
    return {
        "data_format": data.get("format"),
        "split_seed": data.get("split_seed"),
        "val_clean": data.get("val_clean"),
        "teacher": train.get("teacher"),
        "distill_temperature": train.get("distill_temperature"),
        "distill_weight": train.get("distill_weight"),
    }
