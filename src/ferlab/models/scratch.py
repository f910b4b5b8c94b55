"""Models trained from scratch on small gray faces (FER2013's 48x48 by default)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ferlab.errors import FerlabError
from ferlab.models.base import FerModel
from ferlab.models.layers import (
    GRAY_MEAN,
    GRAY_STD,
    SeparableConv2d,
    check_input,
    check_positive_int,
    check_rate,
    keras_init_,
    torch_init_,
)
from ferlab.models.registry import register_model


def _model(
    backbone: nn.Module, head: nn.Module, num_classes: int, input_size: int, in_channels: int, gradcam_layer: str
) -> FerModel:
    """Scratch models take pixels mapped to [-1, 1]."""
    return FerModel(
        backbone,
        head,
        num_classes=num_classes,
        input_size=input_size,
        in_channels=in_channels,
        gradcam_layer=gradcam_layer,
        stats=(GRAY_MEAN * 3, GRAY_STD * 3),
    )


# -- seed_cnn ------------------------------------------------------------------------------


def _seed_cnn(
    name: str,
    num_classes: int,
    widths: tuple[int, ...],
    input_size: int,
    in_channels: int,
    dropout: float,
    dense: tuple[int, ...],
    dense_dropout: float,
) -> FerModel:
    """Blocks of [Conv3x3 'same' -> ReLU -> BN] x 2 -> MaxPool2 -> Dropout, then dense layers."""
    check_input(name, input_size, in_channels, 2 ** len(widths))
    dropout = check_rate(name, "dropout", dropout)
    dense_dropout = check_rate(name, "dense_dropout", dense_dropout)
    if not isinstance(dense, (tuple, list)):
        raise FerlabError(f"{name}: dense must be a list of layer widths, got {dense!r}")
    dense = tuple(check_positive_int(name, "dense", d) for d in dense)

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    ch = in_channels
    for i, width in enumerate(widths, start=1):
        layers[f"block{i}"] = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(ch, width, 3, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("bn1", nn.BatchNorm2d(width, eps=1e-3, momentum=0.01)),
                    ("conv2", nn.Conv2d(width, width, 3, padding=1)),
                    ("relu2", nn.ReLU()),
                    ("bn2", nn.BatchNorm2d(width, eps=1e-3, momentum=0.01)),
                ]
            )
        )
        layers[f"pool{i}"] = nn.MaxPool2d(2)
        layers[f"drop{i}"] = nn.Dropout(dropout)
        ch = width
    backbone = nn.Sequential(layers)

    side = input_size // 2 ** len(widths)
    head_layers: OrderedDict[str, nn.Module] = OrderedDict([("flatten", nn.Flatten(1))])
    features = ch * side * side
    for i, width in enumerate(dense, start=1):
        head_layers[f"fc{i}"] = nn.Linear(features, width)
        head_layers[f"bn{i}"] = nn.BatchNorm1d(width, eps=1e-3, momentum=0.01)
        head_layers[f"relu{i}"] = nn.ReLU()
        head_layers[f"drop{i}"] = nn.Dropout(dense_dropout)
        features = width
    head_layers["out"] = nn.Linear(features, num_classes)
    head = nn.Sequential(head_layers)

    model = _model(backbone, head, num_classes, input_size, in_channels, f"backbone.block{len(widths)}")
    keras_init_(model)
    return model


@register_model("seed_cnn")
def seed_cnn(
    num_classes: int,
    *,
    input_size: int = 48,
    in_channels: int = 1,
    dropout: float = 0.25,
    dense: tuple[int, ...] = (512,),
    dense_dropout: float = 0.5,
) -> FerModel:
    """The second report's CNN as its ~5.8M parameters read it: 3 conv blocks (64, 128, 256), Dense 512.

    Each block is [Conv3x3 'same' -> ReLU -> BatchNorm] x 2 -> MaxPool2 -> Dropout(`dropout`);
    then Flatten -> Dense 512 -> BN -> ReLU -> Dropout(`dense_dropout`) -> the logits layer.

    At 48x48x1 and 8 classes (FER+) Keras would report 5,873,096 parameters, 2,816 of them
    non-trainable (the moving mean and variance of its 1,408 BN channels); PyTorch counts
    5,870,280, the trainable ones. The first dense layer (6x6x256 -> 512) holds 4,719,104.
    The report's words fit it: "extra Convolutional block (256 filters) and the Dense layer
    (512 units)". `seed_cnn_4block` is an earlier, larger reading (7.18M).
    """
    return _seed_cnn("seed_cnn", num_classes, (64, 128, 256), input_size, in_channels, dropout, dense, dense_dropout)


@register_model("seed_cnn_4block")
def seed_cnn_4block(
    num_classes: int,
    *,
    input_size: int = 48,
    in_channels: int = 1,
    dropout: float = 0.25,
    dense: tuple[int, ...] = (512, 256),
    dense_dropout: float = 0.5,
) -> FerModel:
    """An earlier reading of the second report's CNN: 4 conv blocks (64..512), Dense 512 and 256.

    Blocks as in `seed_cnn`, plus a fourth of 512 filters; then for each width in `dense`:
    Dense -> BN -> ReLU -> Dropout(`dense_dropout`); then the logits layer.

    At 48x48x1 and 8 classes PyTorch counts 7,182,792 parameters (Keras would report
    7,188,168: it adds the 5,376 BN moving statistics). This is not the report's ~5.8M, and
    the report has no 256-unit dense layer: `seed_cnn` is its network. Kept because the
    full-data Report 2 runs of docs/experiments.md used it (it was called `seed_cnn` then).
    """
    return _seed_cnn(
        "seed_cnn_4block", num_classes, (64, 128, 256, 512), input_size, in_channels, dropout, dense, dense_dropout
    )


# -- baseline_cnn --------------------------------------------------------------------------


@register_model("baseline_cnn")
def baseline_cnn(num_classes: int, *, input_size: int = 48, in_channels: int = 1, dropout: float = 0.5) -> FerModel:
    """A small CNN, 3 x (Conv3x3-ReLU-MaxPool) 32/64/128, Dense 128, Dropout: our stand-in for V1.

    The first report's V1 is a custom CNN whose layers the report never gives.
    """
    check_input("baseline_cnn", input_size, in_channels, 8)
    dropout = check_rate("baseline_cnn", "dropout", dropout)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    ch = in_channels
    for i, width in enumerate((32, 64, 128), start=1):
        layers[f"conv{i}"] = nn.Sequential(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(ch, width, 3, padding=1)),
                    ("relu", nn.ReLU()),
                ]
            )
        )
        layers[f"pool{i}"] = nn.MaxPool2d(2)
        ch = width
    side = input_size // 8
    head = nn.Sequential(
        OrderedDict(
            [
                ("flatten", nn.Flatten(1)),
                ("fc1", nn.Linear(ch * side * side, 128)),
                ("relu", nn.ReLU()),
                ("dropout", nn.Dropout(dropout)),
                ("out", nn.Linear(128, num_classes)),
            ]
        )
    )
    model = _model(nn.Sequential(layers), head, num_classes, input_size, in_channels, "backbone.conv3")
    keras_init_(model)
    return model


# -- vgg13_fer -----------------------------------------------------------------------------


@register_model("vgg13_fer")
def vgg13_fer(
    num_classes: int,
    *,
    input_size: int = 48,
    in_channels: int = 1,
    batch_norm: bool = True,
    dropout: float = 0.25,
    fc: int = 1024,
    fc_dropout: float = 0.5,
) -> FerModel:
    """The FER+ paper's VGG13 (Barsoum et al. 2016): conv 64x2, 128x2, 256x3, 256x3, FC 1024x2.

    Each conv group ends in MaxPool2 + Dropout(`dropout`); the two FC layers have
    Dropout(`fc_dropout`). The paper's network (64x64 input) has no batch norm: use
    ``batch_norm=False, input_size=64`` for it; the default adds BN after each conv, which
    makes training from scratch far less sensitive to the learning rate.
    """
    check_input("vgg13_fer", input_size, in_channels, 16)
    dropout = check_rate("vgg13_fer", "dropout", dropout)
    fc_dropout = check_rate("vgg13_fer", "fc_dropout", fc_dropout)
    fc = check_positive_int("vgg13_fer", "fc", fc)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    ch = in_channels
    for i, (width, n) in enumerate(((64, 2), (128, 2), (256, 3), (256, 3)), start=1):
        block: OrderedDict[str, nn.Module] = OrderedDict()
        for j in range(1, n + 1):
            block[f"conv{j}"] = nn.Conv2d(ch, width, 3, padding=1, bias=not batch_norm)
            if batch_norm:
                block[f"bn{j}"] = nn.BatchNorm2d(width)
            block[f"relu{j}"] = nn.ReLU()
            ch = width
        layers[f"block{i}"] = nn.Sequential(block)
        layers[f"pool{i}"] = nn.MaxPool2d(2)
        layers[f"drop{i}"] = nn.Dropout(dropout)
    side = input_size // 16
    head = nn.Sequential(
        OrderedDict(
            [
                ("flatten", nn.Flatten(1)),
                ("fc1", nn.Linear(ch * side * side, fc)),
                ("relu1", nn.ReLU()),
                ("drop1", nn.Dropout(fc_dropout)),
                ("fc2", nn.Linear(fc, fc)),
                ("relu2", nn.ReLU()),
                ("drop2", nn.Dropout(fc_dropout)),
                ("out", nn.Linear(fc, num_classes)),
            ]
        )
    )
    model = _model(nn.Sequential(layers), head, num_classes, input_size, in_channels, "backbone.block4")
    keras_init_(model)
    return model


# -- ResNets -------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet's two-conv residual block (torchvision names)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class _ResNetFerBackbone(nn.Module):
    # Made in __init__'s loop with setattr; declared so that forward() type-checks.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        ch = width
        for i, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2), (8, 2)), start=1):
            out = width * mult
            blocks = nn.Sequential(BasicBlock(ch, out, stride), BasicBlock(out, out, 1))
            setattr(self, f"layer{i}", blocks)
            ch = out
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@register_model("resnet18_fer")
def resnet18_fer(
    num_classes: int,
    *,
    input_size: int = 48,
    in_channels: int = 1,
    width: int = 64,
    dropout: float = 0.0,
) -> FerModel:
    """ResNet-18 for 48x48 faces: 3x3 stride-1 stem, no max-pool, stages of `width` x 1/2/4/8.

    ``width=64`` is the standard ResNet-18 (11.2M parameters); ``width=32`` or 16 cut the
    compute about 4x / 16x for CPU training.
    """
    check_input("resnet18_fer", input_size, in_channels, 8)
    width = check_positive_int("resnet18_fer", "width", width)
    dropout = check_rate("resnet18_fer", "dropout", dropout)
    backbone = _ResNetFerBackbone(in_channels, width)
    fc = nn.Linear(backbone.out_channels, num_classes)
    head = nn.Sequential(
        OrderedDict(
            [
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten(1)),
                ("dropout", nn.Dropout(dropout)),
                ("fc", fc),
            ]
        )
    )
    model = _model(backbone, head, num_classes, input_size, in_channels, "backbone.layer4")
    torch_init_(model)
    nn.init.normal_(fc.weight, 0, 0.01)
    return model


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            [
                ("conv", nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)),
                ("bn", nn.BatchNorm2d(out_ch)),
                ("relu", nn.ReLU()),
            ]
        )
    )


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(ch, ch)
        self.conv2 = _conv_bn_relu(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


@register_model("resnet9_fer", pretrained=True)
def resnet9_fer(
    num_classes: int,
    *,
    input_size: int = 48,
    in_channels: int = 1,
    width: int = 16,
    dropout: float = 0.2,
) -> FerModel:
    """A ResNet-9 (Page's fast CIFAR net) for gray faces: the most accuracy per CPU-minute.

    prep conv(w) -> conv(2w)+pool -> residual(2w) -> conv(4w)+pool -> conv(8w)+pool ->
    residual(8w) -> global max pool -> Dropout -> logits. 3x3 convs with BN+ReLU
    throughout; 48x48 input ends at 6x6. The default ``width=16`` (412k parameters) trains
    at several hundred images/s on 2 CPU cores; ``width=32`` (1.6M) has 4x the compute;
    ``width=64`` is Page's original (6.6M).
    """
    check_input("resnet9_fer", input_size, in_channels, 8)
    w = check_positive_int("resnet9_fer", "width", width)
    dropout = check_rate("resnet9_fer", "dropout", dropout)
    backbone = nn.Sequential(
        OrderedDict(
            [
                ("prep", _conv_bn_relu(in_channels, w)),
                ("layer1", _conv_bn_relu(w, 2 * w)),
                ("pool1", nn.MaxPool2d(2)),
                ("res1", _Residual(2 * w)),
                ("layer2", _conv_bn_relu(2 * w, 4 * w)),
                ("pool2", nn.MaxPool2d(2)),
                ("layer3", _conv_bn_relu(4 * w, 8 * w)),
                ("pool3", nn.MaxPool2d(2)),
                ("res3", _Residual(8 * w)),
            ]
        )
    )
    fc = nn.Linear(8 * w, num_classes)
    head = nn.Sequential(
        OrderedDict(
            [
                ("pool", nn.AdaptiveMaxPool2d(1)),
                ("flatten", nn.Flatten(1)),
                ("dropout", nn.Dropout(dropout)),
                ("fc", fc),
            ]
        )
    )
    model = _model(backbone, head, num_classes, input_size, in_channels, "backbone.res3")
    torch_init_(model)
    nn.init.normal_(fc.weight, 0, 0.01)
    return model


# -- mini_xception -------------------------------------------------------------------------


class _XceptionModule(nn.Module):
    """Two separable convs + 3x3/2 max-pool, plus a strided 1x1 conv residual."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride=2, bias=False), nn.BatchNorm2d(out_ch, eps=1e-3)
        )
        self.sep1 = SeparableConv2d(in_ch, out_ch)
        self.bn1 = nn.BatchNorm2d(out_ch, eps=1e-3)
        self.relu = nn.ReLU()
        self.sep2 = SeparableConv2d(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-3)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.sep1(x)))
        out = self.pool(self.bn2(self.sep2(out)))
        return out + self.residual(x)


@register_model("mini_xception")
def mini_xception(num_classes: int, *, input_size: int = 48, in_channels: int = 1, width: int = 1) -> FerModel:
    """mini-Xception (Arriaga et al. 2017, oarriaga/face_classification; the `fer` package's model).

    Two valid 3x3 convs (8 filters), four residual modules of separable convs (16, 32, 64,
    128 filters), a 3x3 conv to the classes and global average pooling. 56,951 parameters
    for 7 classes (Keras reports 58,423: it also counts BN moving statistics). `width`
    multiplies every filter count: separable convs stay cheap, so width 2 still costs a
    fraction of ResNet-9's multiply-adds (the fast live-video model).
    """
    if width < 1:
        raise FerlabError(f"mini_xception: width must be a positive integer, got {width}")
    check_input("mini_xception", input_size, in_channels, 16)
    stem = nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(in_channels, 8 * width, 3, bias=False)),
                ("bn1", nn.BatchNorm2d(8 * width, eps=1e-3)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(8 * width, 8 * width, 3, bias=False)),
                ("bn2", nn.BatchNorm2d(8 * width, eps=1e-3)),
                ("relu2", nn.ReLU()),
            ]
        )
    )
    layers: OrderedDict[str, nn.Module] = OrderedDict([("stem", stem)])
    ch = 8 * width
    for i, filters in enumerate((16, 32, 64, 128), start=1):
        layers[f"module{i}"] = _XceptionModule(ch, filters * width)
        ch = filters * width
    head = nn.Sequential(
        OrderedDict(
            [
                ("conv", nn.Conv2d(ch, num_classes, 3, padding=1)),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten(1)),
            ]
        )
    )
    model = _model(nn.Sequential(layers), head, num_classes, input_size, in_channels, "backbone.module4")
    keras_init_(model)
    return model
