"""Which models a front end offers, what they are called, and what a user should know about one.

The web app and the REST API both show this, so it lives once, below them: models are
named by $FERLAB_MODEL (the one to start with) and $FERLAB_MODELS (more to offer), and
described by `model_summary` from the model's record, with its card (`<model>.md`, written by
`ferlab runs card`, ferlab.evaluation.card) where there is one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ferlab.data.names import dataset_name
from ferlab.models.record import ModelRecord
from ferlab.models.shipped import (
    ENSEMBLE_SEPARATOR,
    default_model,
    member_references,
    model_label,
    resolve,
    shipped_models,
)

EXTRA_MODELS_ENV = "FERLAB_MODELS"
"""More model files or run folders to offer, separated by os.pathsep (':' on Linux)."""


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
    """A short name for a model reference (`model_label`'s); one that names nothing is kept as
    given, so a front end can list it and say why it fails when chosen."""
    path = Path(reference)
    return model_label(reference, path) if path.exists() else str(reference)


def model_summary(
    record: ModelRecord, reference: str | Path | None = None, members: Sequence[ModelRecord] = ()
) -> dict[str, Any]:
    """What a user should know before trusting a model: classes, data, test scores, card text.

    Everything comes from the model's record (ferlab.models.record), so describing a model
    never imports torch. The card text is `<model>.md` beside the model file or export (as
    `weights/<name>.md` for shipped models) or README.md in a run folder, when present;
    without a `reference` (a model handed over already loaded) the name is the record's.
    An ensemble (`A+B`, its members' records in `members`) is described by its members, under
    `members`: it has no test figures, temperature or card of its own.
    """
    if len(members) > 1:
        references = member_references(reference) if reference is not None else []
        described = [
            model_summary(member, references[i] if len(references) == len(members) else None)
            for i, member in enumerate(members)
        ]
        return {
            **model_summary(record),
            "name": ENSEMBLE_SEPARATOR.join(d["name"] for d in described),
            "architecture": "ensemble of " + ", ".join(f"{d['name']} ({d['architecture']})" for d in described),
            "input": None,
            "temperature": None,
            "tta": None,
            "training_data": described[0]["training_data"]
            if len({d["training_data"] for d in described}) == 1
            else None,
            "run": None,
            "validation": None,
            "members": described,
        }
    card_file = None
    if reference is not None:
        path = resolve(reference).path
        card_file = path / "README.md" if path.is_dir() else path.with_suffix(".md")
    card_text = card_file.read_text(encoding="utf-8") if card_file is not None and card_file.is_file() else None
    headline = record.headline
    return {
        "name": model_name(reference) if reference is not None else record.name or "model",
        "architecture": record.arch,
        "input": {"size": record.input_size, "channels": record.in_channels},
        "label_set": record.label_set,
        "classes": list(record.classes),
        "temperature": record.temperature,
        "tta": record.tta,
        "training_data": dataset_name(record.training_data),
        "run": record.run,
        "test": None if headline is None else asdict(headline),
        "validation": None if record.validation is None else dict(record.validation),
        "card": card_text,
    }
