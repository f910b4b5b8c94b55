"""The front ends that only adapt I/O around a `Predictor`: the web app (webapp.py) and the REST API (api.py).

What they share lives below them: the models offered and their summaries in
ferlab.inference.catalog, Grad-CAM of a predicted face in ferlab.evaluation.explain.
"""

from __future__ import annotations

# Until api.py and cli/serve.py import these from ferlab.inference.catalog (issue 19); no logic here.
from ferlab.inference.catalog import EXTRA_MODELS_ENV, MODEL_ENV, default_model
from ferlab.inference.catalog import model_summary as model_card

__all__ = ["EXTRA_MODELS_ENV", "MODEL_ENV", "default_model", "model_card"]
