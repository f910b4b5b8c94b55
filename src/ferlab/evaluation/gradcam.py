"""Grad-CAM (Selvaraju et al., 2017): where in the face the model looked for a class.

Works for every registered architecture through the layer its spec declares.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ferlab.data.tensors import normalize, to_uint8_tensor
from ferlab.errors import FerlabError
from ferlab.models.bundle import ModelBundle


def gradcam(bundle: ModelBundle, face: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, int]:
    """Heatmap in [0, 1] at the face's size for `class_index` (default: the predicted class).

    `face` is one uint8 (S, S, C) crop at the model's input size. Returns the heatmap and
    the class it explains.
    """
    record = bundle.record
    if face.shape != (record.input_size, record.input_size, record.in_channels):
        size = f"{record.input_size}x{record.input_size}x{record.in_channels}"
        raise FerlabError(f"face must be {size}, got {face.shape}")
    model = bundle.model.eval()
    assert record.gradcam_layer is not None  # a bundle's record names it (only older exports' lack it)
    layer = model.get_submodule(record.gradcam_layer)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["activation"] = output

    handle = layer.register_forward_hook(keep)
    try:
        x = normalize(to_uint8_tensor(face[None]), record.input_mean, record.input_std)
        x = x.to(next(model.parameters()).device).requires_grad_(True)  # where the predictor put it (--device)
        with torch.enable_grad():
            logits = model(x)
            target = int(logits.argmax(1)) if class_index is None else class_index
            if not 0 <= target < logits.shape[1]:
                raise FerlabError(f"class index {target} is outside 0..{logits.shape[1] - 1}")
            model.zero_grad(set_to_none=True)
            logits[0, target].backward()
    finally:
        handle.remove()
    activation = captured["activation"]
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)  # type: ignore[union-attr]
    cam = F.relu((weights * activation).sum(dim=1))[0].detach().float().cpu().numpy()
    cam = cv2.resize(cam, (record.input_size, record.input_size), interpolation=cv2.INTER_LINEAR)
    peak = cam.max()
    return (cam / peak if peak > 0 else cam), target


def overlay(face_rgb: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (resized to the image) onto an RGB or gray uint8 image."""
    if face_rgb.ndim == 2 or face_rgb.shape[2] == 1:
        face_rgb = np.repeat(face_rgb.reshape(face_rgb.shape[0], face_rgb.shape[1], 1), 3, axis=2)
    resized = cv2.resize(heatmap.astype(np.float32), (face_rgb.shape[1], face_rgb.shape[0]))
    colored = cv2.applyColorMap((255 * resized).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return ((1 - alpha) * face_rgb + alpha * colored).astype(np.uint8)
