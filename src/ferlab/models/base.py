"""What every ferlab model is: a backbone, a head, and a spec that says how to feed it.

A `FerModel` computes ``head(backbone(x))`` and returns logits (no softmax). Its `spec`
declares the input it expects and the layer Grad-CAM should look at; `freeze_backbone`
and `unfreeze_top` implement the usual two-phase transfer-learning recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ferlab.errors import FerlabError
from ferlab.models.layers import norm_stats


@dataclass(frozen=True)
class ModelSpec:
    """The declared facts about a model that trainers, data pipelines and explainers use.

    Attributes:
        name: the registry name (``create_model(spec.name, spec.num_classes, **spec.config)``
            rebuilds the same architecture).
        num_classes: size of the logits.
        input_size: side of the square input image, in pixels.
        in_channels: 1 (gray) or 3 (RGB).
        gradcam_layer: dotted name of the submodule whose output feature map Grad-CAM uses
            (the last conv block); ``model.get_submodule(spec.gradcam_layer)`` resolves it.
        input_mean, input_std: per-channel normalisation the model expects for pixels scaled
            to [0, 1]: feed ``(x - mean) / std``. Pretrained weights only work with theirs.
        config: every option of the architecture, defaults included (not `pretrained`:
            the weights live in checkpoints, not in the config).
        pretrained: where the backbone weights came from, or None.
        transfer: True for ImageNet-style backbones meant for transfer learning.
    """

    name: str
    num_classes: int
    input_size: int
    in_channels: int
    gradcam_layer: str
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    config: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    transfer: bool = False

    @classmethod
    def of(
        cls,
        name: str,
        num_classes: int,
        input_size: int,
        in_channels: int,
        gradcam_layer: str,
        stats: tuple[tuple[float, ...], tuple[float, ...]],
        *,
        transfer: bool = False,
    ) -> ModelSpec:
        """A builder's spec; `stats` are the RGB (mean, std), averaged to one channel for gray input."""
        mean, std = norm_stats(in_channels, *stats)
        return cls(name, num_classes, input_size, in_channels, gradcam_layer, mean, std, transfer=transfer)


class FerModel(nn.Module):
    """``head(backbone(x))``: image batch (N, C, H, W) -> logits (N, num_classes).

    Frozen parts of the backbone run in inference mode even when the model is put in
    training mode: any backbone module whose parameters are all frozen (a batch-norm layer,
    a whole block, the whole backbone) is switched to eval, so BN statistics do not drift
    and dropout / stochastic depth inside frozen blocks is off. This is what Keras'
    transfer-learning recipe gets from ``base_model(x, training=False)``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    # -- transfer learning -------------------------------------------------------------

    def backbone_layers(self) -> list[tuple[str, nn.Module]]:
        """The backbone's "layers" in forward order: modules that own parameters directly.

        These are what `unfreeze_top` counts by default (Keras counts parameterless layers
        too, so a Keras "top 20 layers" is fewer of these: see `keras_layers`).
        """
        return [
            (f"backbone.{name}" if name else "backbone", module)
            for name, module in self.backbone.named_modules()
            if any(True for _ in module.parameters(recurse=False))
        ]

    def keras_layers(self) -> list[tuple[str, nn.Module | None]]:
        """The backbone's layers as the Keras model it reproduces lists them: (Keras name, the
        module holding that layer's weights, or None for a layer without weights)."""
        listing = getattr(self.backbone, "keras_layers", None)
        if listing is None:
            raise FerlabError(
                f"{self.spec.name} does not reproduce a Keras model, so its layers cannot be counted as "
                "Keras counts them; count the layers with weights instead"
            )
        layers: list[tuple[str, nn.Module | None]] = listing()
        return layers

    def freeze_backbone(self) -> None:
        """Make only the head trainable."""
        self.unfreeze_top(0)

    def unfreeze_top(self, k: int, count: str = "weights") -> None:
        """Make exactly the last `k` backbone layers and the head trainable.

        `count` says what a layer is: "weights", a module that owns parameters
        (`backbone_layers`); "keras", a layer of the Keras model the backbone reproduces
        (`keras_layers`), so that ``k`` means what Keras' ``base.layers[-k:]`` means. ``k=0``
        freezes the whole backbone; ``k`` at least the number of layers unfreezes all.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise FerlabError(f"the number of layers to unfreeze must be an integer >= 0, got {k!r}")
        if count not in ("weights", "keras"):
            raise FerlabError(f"layers are counted by 'weights' or 'keras', got {count!r}")
        layers = self.keras_layers() if count == "keras" else self.backbone_layers()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        for _, module in layers[len(layers) - min(k, len(layers)) :]:
            for p in module.parameters(recurse=False) if module is not None else ():
                p.requires_grad_(True)
        for p in self.head.parameters():
            p.requires_grad_(True)
        self.train(self.training)

    def unfreeze_all(self) -> None:
        for p in self.parameters():
            p.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> FerModel:
        super().train(mode)
        if mode:
            for module in self.backbone.modules():
                if module.training:
                    params = list(module.parameters())
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; buffers such as BN running stats are not counted."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def summary(model: nn.Module, input_size: int | None = None, in_channels: int | None = None) -> str:
    """A Keras-like table of the model's leaf layers, output shapes and exact parameter counts.

    Output shapes come from one forward pass on a zero batch of 2 in eval mode (the
    model's mode is restored afterwards). Parameter counts exclude BN running statistics,
    which Keras counts as non-trainable parameters; a last line gives the Keras count, so a
    figure quoted from a Keras model summary can be compared.
    """
    spec: ModelSpec | None = getattr(model, "spec", None)
    size = input_size or (spec.input_size if spec else None)
    channels = in_channels or (spec.in_channels if spec else None)
    shapes: dict[str, tuple[int, ...]] = {}
    if size and channels:
        hooks = []
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):

                def hook(_m, _inp, out, name=name):
                    if isinstance(out, torch.Tensor):
                        shapes[name] = tuple(out.shape[1:])

                hooks.append(module.register_forward_hook(hook))
        was_training = model.training
        model.eval()
        try:
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            with torch.no_grad():
                model(torch.zeros(2, channels, size, size, device=device))
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)

    rows = [("Layer", "Type", "Output shape", "Params")]
    for name, module in model.named_modules():
        if not name or any(True for _ in module.children()):
            continue
        n = sum(p.numel() for p in module.parameters(recurse=False))
        shape = shapes.get(name)
        rows.append((name, type(module).__name__, str(shape) if shape else "-", f"{n:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    rule = "-" * (sum(widths) + 6)
    lines = []
    if spec:
        lines.append(
            f"Model {spec.name}: input {spec.in_channels}x{spec.input_size}x{spec.input_size}, "
            f"{spec.num_classes} classes, Grad-CAM layer {spec.gradcam_layer}"
        )
    for i, r in enumerate(rows):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}")
        if i == 0:
            lines.append(rule)
    total, trainable = param_counts(model)
    lines += [
        rule,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
    ]
    moving = sum(
        b.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for b in (m.running_mean, m.running_var)
        if b is not None
    )
    if moving:
        lines.append(
            f"Keras would report {total + moving:,} params, {total - trainable + moving:,} non-trainable "
            f"(it adds the {moving:,} batch-norm moving means and variances)"
        )
    return "\n".join(lines)
