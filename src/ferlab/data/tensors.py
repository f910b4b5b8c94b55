"""The one conversion from uint8 face images to model input, shared by training and inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def to_uint8_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) array -> uint8 (N, C, H, W) tensor; stays uint8 to keep memory small."""
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy())


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[0, 255] batch (N, C, H, W) -> float ``(x / 255 - mean) / std`` per channel (the model's spec)."""
    channels = batch.shape[1]
    mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, channels, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, channels, 1, 1)
    return (batch.float() / 255.0 - mean_t) / std_t
