"""The front ends that only adapt I/O around a `Predictor`: the web app (webapp.py) and the REST API (api.py).

What they share lives below them: the models offered and their summaries in
ferlab.inference.catalog, Grad-CAM of a predicted face in ferlab.evaluation.explain.
"""

from __future__ import annotations
