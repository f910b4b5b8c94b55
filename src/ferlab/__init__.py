"""ferlab: train, evaluate, explain and serve facial expression recognition models.

import ferlab
predictor = ferlab.load()            # the shipped default model
for face in predictor.predict("photo.jpg"):
    print(face.box, face.label, face.confidence, face.probabilities)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ferlab.inference.predictor import Predictor


def load(name_or_path: str | None = None, **options: Any) -> Predictor:
    """A Predictor for a shipped model name, a model.pt or a run folder (imports torch lazily)."""
    from ferlab.inference.predictor import load as load_predictor

    return load_predictor(name_or_path, **options)
