"""What every ferlab model is: a backbone, a head, and the facts that say how to feed it.

A `FerModel` computes ``head(backbone(x))`` and returns logits (no softmax). A two-head model
also has a `second_head` beside `head`, on the same backbone features, trained on a second
label set; `forward` still returns the first head's logits, so Grad-CAM, export and serving
see the model they always saw. It declares the
input it expects and the layer Grad-CAM should look at under the names its record
(ferlab.models.record) gives them, which copies them when the model is finished;
`freeze_backbone` and `unfreeze_top` implement the usual two-phase transfer-learning recipe.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ferlab.errors import FerlabError
from ferlab.models.layers import norm_stats


class FerModel(nn.Module):
    """``head(backbone(x))``: image batch (N, C, H, W) -> logits (N, num_classes).

    Frozen parts of the backbone run in inference mode even when the model is put in
    training mode: any backbone module whose parameters are all frozen (a batch-norm layer,
    a whole block, the whole backbone) is switched to eval, so BN statistics do not drift
    and dropout / stochastic depth inside frozen blocks is off. This is what Keras'
    transfer-learning recipe gets from ``base_model(x, training=False)``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        *,
        num_classes: int,
        input_size: int,
        in_channels: int,
        gradcam_layer: str,
        stats: tuple[tuple[float, ...], tuple[float, ...]],
        transfer: bool = False,
    ) -> None:
        """`stats`: the RGB (mean, std) of pixels in [0, 1] the model expects, averaged to one
        channel for gray input; `create_model` names the architecture and its options."""
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.arch = ""
        self.arch_options: dict[str, Any] = {}
        """Every option of the architecture, defaults included (`create_model(arch, n, **arch_options)`)."""
        self.num_classes = num_classes
        self.input_size = input_size
        self.in_channels = in_channels
        self.input_mean, self.input_std = norm_stats(in_channels, *stats)
        self.gradcam_layer = gradcam_layer
        """The last conv block: ``model.get_submodule(model.gradcam_layer)``."""
        self.transfer = transfer
        self.pretrained: str | None = None
        """Where the backbone's starting weights came from (set by `create_model`)."""
        self.second_head: nn.Module | None = None
        """A head for a second label set on the same features (`registry.add_second_head`), or None."""

    def forward(self, x: torch.Tensor, both: bool = False) -> Any:
        """The logits; with `both`, (logits, second head's logits). A keyword of `forward` rather
        than another method so that a DistributedDataParallel wrapper runs both heads too."""
        features = self.backbone(x)
        if not both:
            return self.head(features)
        if self.second_head is None:
            raise FerlabError(f"this {self.arch} model has one head; it was not trained with data.second_labels")
        return self.head(features), self.second_head(features)

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(first head's logits, second head's logits) of one backbone pass."""
        logits, second = self(x, both=True)
        return logits, second

    def primary_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of the one-head model (backbone and `head`): what a model file holds as
        its weights, so a two-head run's model.pt loads as the plain model it serves."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("second_head.")}

    def heads(self) -> list[nn.Module]:
        return [self.head] if self.second_head is None else [self.head, self.second_head]

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
                f"{self.arch} does not reproduce a Keras model, so its layers cannot be counted as "
                "Keras counts them; count the layers with weights instead"
            )
        layers: list[tuple[str, nn.Module | None]] = listing()
        return layers

    def freeze_backbone(self) -> None:
        """Make only the head (or both heads) trainable."""
        self.unfreeze_top(0)

    def unfreeze_top(self, k: int, count: str = "weights") -> None:
        """Make exactly the last `k` backbone layers and the head (both heads) trainable.

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
        for head in self.heads():
            for p in head.parameters():
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
    fer = model if isinstance(model, FerModel) else None
    size = input_size or (fer.input_size if fer else None)
    channels = in_channels or (fer.in_channels if fer else None)
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
    if fer:
        lines.append(
            f"Model {fer.arch}: input {fer.in_channels}x{fer.input_size}x{fer.input_size}, "
            f"{fer.num_classes} classes, Grad-CAM layer {fer.gradcam_layer}"
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
