"""Batched classification of face crops with a model bundle: the one place logits are made.

The evaluator and the predictor both call `face_logits`, so a model is evaluated with
exactly the preprocessing and test-time augmentation it is served with.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ferlab.data.tensors import normalize, to_uint8_tensor
from ferlab.errors import FerlabError
from ferlab.models.bundle import ModelBundle

TTA = Literal["none", "flip", "tencrop"]
BATCH = 256
TENCROP_SCALE = 0.9


def _views(batch: torch.Tensor, tta: TTA) -> list[torch.Tensor]:
    """The test-time views of a float (N, C, S, S) batch, each at size S."""
    if tta == "none":
        return [batch]
    if tta == "flip":
        return [batch, batch.flip(-1)]
    if tta != "tencrop":
        raise FerlabError(f"unknown test-time augmentation {tta!r}; use none, flip or tencrop")
    size = batch.shape[-1]
    crop = max(2, round(size * TENCROP_SCALE))
    offsets = [(0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop),
               ((size - crop) // 2, (size - crop) // 2)]
    views = []
    for top, left in offsets:
        patch = F.interpolate(batch[:, :, top:top + crop, left:left + crop], size=(size, size),
                              mode="bilinear", align_corners=False)
        views += [patch, patch.flip(-1)]
    return views


@torch.no_grad()
def face_logits(bundle: ModelBundle, faces: np.ndarray, tta: TTA = "none") -> np.ndarray:
    """Uncalibrated logits (N, K) for uint8 faces (N, S, S, C) already at the model's input size.

    With test-time augmentation the logits of the views are averaged.
    """
    spec = bundle.spec
    expected = (spec.input_size, spec.input_size, spec.in_channels)
    if faces.ndim != 4 or faces.shape[1:] != expected:
        raise FerlabError(f"faces must be (N, {expected[0]}, {expected[1]}, {expected[2]}) uint8, got {faces.shape}")
    model = bundle.model.eval()
    outputs = []
    for start in range(0, len(faces), BATCH):
        batch = to_uint8_tensor(faces[start:start + BATCH]).float()
        views = _views(batch, tta)
        logits = torch.stack([model(normalize(v, spec.input_mean, spec.input_std)) for v in views]).mean(0)
        outputs.append(logits.float())
    if not outputs:
        return np.zeros((0, spec.num_classes), dtype=np.float32)
    return torch.cat(outputs).numpy()
