"""The trained-model file (`model.pt`): weights plus everything needed to use them.

A bundle is what the trainer hands to the evaluator, the predictor and the exporters:
architecture name and options, label set, input preprocessing and the calibration
temperature. Loading it never needs the training config or the dataset.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ferlab.errors import FerlabError
from ferlab.labels import LabelSet
from ferlab.models.base import FerModel, ModelSpec
from ferlab.models.registry import create_model

BUNDLE_FORMAT = "ferlab-model/1"


@dataclass
class ModelBundle:
    model: FerModel
    label_set: LabelSet
    temperature: float = 1.0
    """Softmax temperature fitted on validation data (1.0 = uncalibrated)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Provenance: run name, dataset, metrics; shown in model cards and apps."""

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and a rename, so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        try:
            torch.save(obj, handle)
        except BaseException:  # Ctrl-C included: leave no half-written .tmp behind
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
            raise
    os.replace(handle.name, path)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the `tmp*.tmp` files an `atomic_save` killed mid-write (kill -9, power cut) left in `folder`."""
    removed = []
    for stale in folder.glob("tmp*.tmp") if folder.is_dir() else ():
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def load_torch_file(path: Path, what: str, allow: Sequence[Any] = ()) -> Any:
    """`torch.load` with `weights_only=True`: tensors and plain values come back, code never runs.

    A file that names any other Python object (a pickled payload, a foreign checkpoint) is
    refused without unpickling it; `allow` admits a few exact harmless types on top. A cut
    short or damaged file is a one-line FerlabError too.
    """
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message advises turning weights_only off: exactly what must not be done.
        text = str(exc)
        if any(word in text for word in ("GLOBAL", "global", "Can only build", "allowlisted")):
            raise FerlabError(
                f"{path}: not a {what}: it holds Python objects other than tensors and plain "
                "values, and ferlab never loads those (unpickling them could run code)"
            ) from None
        raise FerlabError(f"{path}: not a readable {what} (damaged or cut short)") from None
    except Exception as exc:  # torch raises many types for foreign, empty or truncated files
        reason = " ".join(str(exc).split())[:160]
        raise FerlabError(
            f"{path}: not a readable {what}, damaged or cut short "
            f"({type(exc).__name__}{': ' + reason if reason else ''})"
        ) from None


def save_bundle(bundle: ModelBundle, path: Path) -> None:
    spec = asdict(bundle.model.spec)
    atomic_save(
        {
            "format": BUNDLE_FORMAT,
            "spec": spec,
            "state_dict": bundle.model.state_dict(),
            "label_set": {"name": bundle.label_set.name, "classes": list(bundle.label_set.classes)},
            "temperature": float(bundle.temperature),
            "info": bundle.info,
        },
        path,
    )


def bundle_file(path: str | Path) -> Path:
    """The model file a user means: a run folder's model.pt, or the file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


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
            info=data.get("info", {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise FerlabError(f"{path}: a damaged ferlab model file ({type(exc).__name__}: {reason})") from None
