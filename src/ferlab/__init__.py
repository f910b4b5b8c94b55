"""ferlab: train, evaluate, explain and serve facial expression recognition models.

import ferlab
predictor = ferlab.load()            # the shipped default model
for face in predictor.predict(ferlab.SAMPLE):   # or "photo.jpg", a PIL image, an RGB array
    print(face.box, face.label, face.confidence, face.probabilities)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

SAMPLE = Path(__file__).parent / "samples" / "astronaut.jpg"
"""A public-domain photo that ships with ferlab (NASA; provenance in samples/README.md), so a first
run needs no picture of one's own: `ferlab demo` runs on it."""

if TYPE_CHECKING:
    from ferlab.inference.predictor import Predictor


def load(name_or_path: str | None = None, **options: Any) -> Predictor:
    """A Predictor for a shipped model name, a model.pt or a run folder (imports torch lazily)."""
    from ferlab.inference.predictor import load as load_predictor

    return load_predictor(name_or_path, **options)
