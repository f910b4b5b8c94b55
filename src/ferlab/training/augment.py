"""Batch augmentation on tensors: geometric and photometric policies with configurable strengths.

Applied to a whole batch at once (one affine grid sample), so data loading never limits
CPU training speed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ferlab.training.config import AugmentConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def geometric(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random rotation, zoom, shift and horizontal flip of a float (N, C, H, W) batch."""
    n = batch.shape[0]
    angle = _uniform(n, -config.rotation, config.rotation, generator) * math.pi / 180
    scale = 1.0 / _uniform(n, 1 - config.zoom, 1 + config.zoom, generator)  # grid scale: >1 zooms out
    shift_x = _uniform(n, -config.shift, config.shift, generator) * 2
    shift_y = _uniform(n, -config.shift, config.shift, generator) * 2
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if config.flip else torch.ones(n)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, shift_x], dim=1),
        torch.stack([sin * flip, cos, shift_y], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def photometric(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and Gaussian noise on a float batch in [0, 255]."""
    n = batch.shape[0]
    brightness = _uniform(n, -config.brightness, config.brightness, generator).view(n, 1, 1, 1) * 255
    contrast = _uniform(n, 1 - config.contrast, 1 + config.contrast, generator).view(n, 1, 1, 1)
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    noise = torch.randn(batch.shape, generator=generator) * (config.noise * 255)
    return ((batch - mean) * contrast + mean + brightness + noise).clamp_(0, 255)


def augment(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, C, H, W) -> augmented float batch in [0, 255] under the configured policy."""
    out = batch.float()
    if config.policy in ("geometric", "both"):
        out = geometric(out, config, generator)
    if config.policy in ("photometric", "both"):
        out = photometric(out, config, generator)
    return out
