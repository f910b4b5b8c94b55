"""Which models a front end offers, what they are called, and what a user should know about one.

The web app and the REST API both show this, so it lives once, below them: models are
named by $FERLAB_MODEL (the one to start with) and $FERLAB_MODELS (more to offer), and
described by `model_summary`, which quotes the model's card (`<model>.md`, written by
`ferlab runs card`, ferlab.evaluation.card) where there is one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ferlab.models.bundle import ModelBundle
from ferlab.models.shipped import default_model, resolve_model, shipped_models

EXTRA_MODELS_ENV = "FERLAB_MODELS"
"""More model files or run folders to offer, separated by os.pathsep (':' on Linux)."""
VALIDATION_KEYS = ("accuracy", "macro_f1", "ece_calibrated")
"""The validation metrics a summary shows (loss is not comparable across models)."""


def installed_models() -> list[str]:
    """References of every model a front end may offer, the default first.

    $FERLAB_MODEL, the shipped models by name, then $FERLAB_MODELS; references that do not
    resolve are kept, so choosing one shows why it fails.
    """
    references = [
        default_model(),
        *shipped_models(),
        *filter(None, os.environ.get(EXTRA_MODELS_ENV, "").split(os.pathsep)),
    ]
    return list(dict.fromkeys(references))


def model_name(reference: str | Path) -> str:
    """A short name for a model reference: the shipped name, or the run folder / file stem."""
    path = Path(reference)
    if str(reference) in shipped_models() or not path.exists():
        return str(reference)
    return path.name if path.is_dir() else path.parent.name if path.name == "model.pt" else path.stem


def model_summary(bundle: ModelBundle, reference: str | Path | None = None) -> dict[str, Any]:
    """What a user should know before trusting a model: classes, data, test scores, card text.

    The card text is `<model>.md` beside the model file (as `weights/<name>.md` for shipped
    models) or README.md in a run folder, when present; without a `reference` (a model
    handed over already loaded) the name comes from the run it was trained in.
    """
    metrics = bundle.info.get("metrics", {})
    card_file = None
    if reference is not None:
        path = resolve_model(reference)
        card_file = path / "README.md" if path.is_dir() else path.with_suffix(".md")
    card_text = card_file.read_text(encoding="utf-8") if card_file is not None and card_file.is_file() else None
    spec = bundle.spec
    return {
        "name": model_name(reference) if reference is not None else str(bundle.info.get("run", "model")),
        "architecture": spec.name,
        "input": {"size": spec.input_size, "channels": spec.in_channels},
        "label_set": bundle.label_set.name,
        "classes": list(bundle.label_set.classes),
        "temperature": bundle.temperature,
        "tta": bundle.info.tta,
        "training_data": bundle.info.get("data"),
        "run": bundle.info.get("run"),
        "test": _card_test_figures(card_text, metrics.get("test")),
        "validation": {k: v for k, v in metrics.get("val", {}).items() if k in VALIDATION_KEYS} or None,
        "card": card_text,
    }


def _card_test_figures(card_text: str | None, trained: dict[str, Any] | None) -> dict[str, Any] | None:
    """The test figures to show: the model card's where it has them, else the training run's.

    The run's figures come from the trainer's bf16 evaluation; the card's are float32 (the
    weights as trained; serving runs int8 where a model has an int8 export, which
    benchmarks/int8.py compares) and are the ones the README and docs quote (87.63 % for
    ferplus8 where the trainer measured 87.82 %).
    """
    found = {}
    if card_text:
        accuracy = re.search(r"Accuracy \*\*([\d.]+)%\*\* on \d+ test images", card_text)
        macro_f1 = re.search(r"; macro-F1 ([\d.]+);", card_text)
        if accuracy:
            found["accuracy"] = round(float(accuracy[1]) / 100, 4)
        if macro_f1:
            found["macro_f1"] = float(macro_f1[1])
    return {**(trained or {}), **found} or None
