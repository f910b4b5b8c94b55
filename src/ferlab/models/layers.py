"""Building blocks and checks shared by the model definitions.

No in-place operations anywhere: Grad-CAM hooks on a block's output must see the tensor
the next block received.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ferlab.errors import FerlabError

GRAY_MEAN, GRAY_STD = (0.5,), (0.5,)
"""Scratch models expect pixels mapped to [-1, 1]."""
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def check_input(name: str, input_size: object, in_channels: object, min_size: int) -> None:
    if isinstance(in_channels, bool) or in_channels not in (1, 3):
        raise FerlabError(f"{name}: in_channels must be 1 (gray) or 3 (RGB), got {in_channels!r}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < min_size:
        raise FerlabError(f"{name}: input_size must be an integer >= {min_size}, got {input_size!r}")


def check_rate(name: str, option: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise FerlabError(f"{name}: {option} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_positive_int(name: str, option: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FerlabError(f"{name}: {option} must be a positive integer, got {value!r}")
    return value


def norm_stats(
    in_channels: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel stats for `in_channels`; RGB stats averaged for gray input."""
    if in_channels == len(mean):
        return tuple(mean), tuple(std)
    return (sum(mean) / len(mean),), (sum(std) / len(std),)


def keras_init_(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform kernels, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def torch_init_(module: nn.Module) -> None:
    """torchvision's recipe: He-normal (fan out) convs, unit BN, small normal linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class SeparableConv2d(nn.Module):
    """Keras' SeparableConv2D: depthwise k x k then pointwise 1x1, 'same' padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size // 2, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class TfSameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (extra pixel on the bottom/right when odd).

    Stride-1 odd kernels pad symmetrically like any PyTorch conv; strided ones pad in
    forward. Same parameters and state-dict keys as `nn.Conv2d`.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1, bias: bool = False
    ) -> None:
        padding = kernel_size // 2 if stride == 1 else 0
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride[0]
        if s > 1:
            k = self.kernel_size[0]
            ih, iw = x.shape[-2:]
            pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
            pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
            if pad_h or pad_w:
                x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch with probability `p` (in training)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class TransferHead(nn.Sequential):
    """The report's transfer head: global avg pool -> Dense(hidden, ReLU) -> Dropout -> logits."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(in_features, hidden)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)
