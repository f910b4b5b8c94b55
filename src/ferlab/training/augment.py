"""Batch augmentation on tensors: geometric and photometric policies with configurable strengths.

Applied to a whole batch at once (one affine grid sample), so data loading never limits
CPU training speed. Random draws come from a CPU generator whatever the batch's device, so a
GPU batch is augmented exactly as the same batch on the CPU; only the per-image parameters
(a few numbers each, and photometric noise) are copied to the device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ferlab.training.config import AugmentConfig


def _on(values: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """A CPU-drawn tensor on the batch's device (no copy on the CPU)."""
    return values if values.device == batch.device else values.to(batch.device, non_blocking=True)


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
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift_x], dim=1),
            torch.stack([sin * flip, cos, shift_y], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(_on(theta, batch), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def photometric(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and Gaussian noise (one level, or one per face) on a float batch in [0, 255]."""
    n = batch.shape[0]
    brightness = _uniform(n, -config.brightness, config.brightness, generator).view(n, 1, 1, 1) * 255
    contrast = _uniform(n, 1 - config.contrast, 1 + config.contrast, generator).view(n, 1, 1, 1)
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    level: float | torch.Tensor = config.noise
    if config.noise_max > config.noise:  # drawn only then, so configs without it keep their random stream
        level = _uniform(n, config.noise, config.noise_max, generator).view(n, 1, 1, 1)
    noise = torch.randn(batch.shape, generator=generator) * (level * 255)
    brightness, contrast, noise = _on(brightness, batch), _on(contrast, batch), _on(noise, batch)
    return ((batch - mean) * contrast + mean + brightness + noise).clamp_(0, 255)


def _chosen(n: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """A (N, 1, 1, 1) mask selecting each face with `probability`."""
    return (torch.rand(n, generator=generator) < probability).view(n, 1, 1, 1)


def blur(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur of a random share of the faces; one sigma per batch, scaled to the input size
    (`blur_sigma` is in pixels of a 48 px face), so a 96 px model sees the same softness."""
    sigma = float(_uniform(1, 0.3, max(0.3, config.blur_sigma), generator)) * batch.shape[-1] / 48
    radius = max(1, math.ceil(2.5 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps = _on(taps / taps.sum(), batch)
    channels = batch.shape[1]
    padded = F.pad(batch, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1).contiguous(), groups=channels)
    out = F.conv2d(out, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1).contiguous(), groups=channels)
    return torch.where(_on(_chosen(batch.shape[0], config.blur, generator), batch), out, batch)


def low_resolution(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Shrink a random share of the faces to `low_res_min`..size pixels and scale them back up,
    as a small face in a webcam frame or film still reaches the model."""
    size = batch.shape[-1]
    low = int(torch.randint(min(config.low_res_min, size), size + 1, (1,), generator=generator))
    small = F.interpolate(batch, size=(low, low), mode="area")
    out = F.interpolate(small, size=batch.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(_on(_chosen(batch.shape[0], config.low_res, generator), batch), out, batch)


def erase(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): a rectangle of 2-20 % of the face, aspect 0.3-3.3,
    filled with one random grey level, on a random share of the faces."""
    n, _, height, width = batch.shape
    area = _uniform(n, 0.02, 0.2, generator)
    aspect = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), generator))
    h = (torch.sqrt(area * aspect) * height).clamp(1, height)
    w = (torch.sqrt(area / aspect) * width).clamp(1, width)
    top = torch.rand(n, generator=generator) * (height - h)
    left = torch.rand(n, generator=generator) * (width - w)
    rows = torch.arange(height, dtype=torch.float32).view(1, height, 1)
    cols = torch.arange(width, dtype=torch.float32).view(1, 1, width)
    inside = (
        (rows >= top.view(n, 1, 1))
        & (rows < (top + h).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1))
        & (cols < (left + w).view(n, 1, 1))
    ).unsqueeze(1)
    fill = (torch.rand(n, generator=generator) * 255).view(n, 1, 1, 1)
    return torch.where(_on(inside & _chosen(n, config.erase, generator), batch), _on(fill, batch), batch)


def augment(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, C, H, W) -> augmented float batch in [0, 255] under the configured policy,
    then the robustness corruptions (blur, low resolution, erasing) each with its probability;
    a `clean_share` of the faces keeps the geometric changes only."""
    out = batch.float()
    if config.policy in ("geometric", "both"):
        out = geometric(out, config, generator)
    clean = out
    if config.policy in ("photometric", "both"):
        out = photometric(out, config, generator)
    if config.blur > 0:
        out = blur(out, config, generator)
    if config.low_res > 0:
        out = low_resolution(out, config, generator)
    if config.erase > 0:
        out = erase(out, config, generator)
    if config.clean_share > 0:  # drawn only then, so configs without it keep their random stream
        out = torch.where(_on(_chosen(out.shape[0], config.clean_share, generator), out), clean, out)
    return out
