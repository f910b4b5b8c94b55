"""The model zoo: `create_model(name, num_classes, **options)` and friends.

>>> from ferlab.models import create_model, available_models, summary
>>> model = create_model("seed_cnn", 7)            # 48x48 gray -> 7 logits
>>> model.input_size, model.in_channels, model.gradcam_layer
(48, 1, 'backbone.block4')

Transfer models (`mobilenet_v2`, `efficientnet_b0`, `efficientnet_lite0`, `resnet50v2`)
split into `model.backbone` and `model.head`; `model.freeze_backbone()` and
`model.unfreeze_top(k)` drive two-phase fine-tuning. Every model has the same split, so the
same calls work on scratch models too.
"""

from __future__ import annotations

import importlib
from typing import Any

# Re-exports resolve on first use (PEP 562), so importing a torch-free submodule such as
# `ferlab.models.calibration` or `ferlab.models.record` (the ONNX inference path) never
# imports torch through this package.
_EXPORTS = {
    "FerModel": "base",
    "param_counts": "base",
    "summary": "base",
    "efficientnet_lite0_weights_path": "pretrained",
    "load_backbone_weights": "pretrained",
    "read_state_dict": "pretrained",
    "available_models": "registry",
    "create_model": "registry",
    "default_config": "registry",
    "describe_model": "registry",
    "register_model": "registry",
}
__all__ = [
    "FerModel",
    "available_models",
    "create_model",
    "default_config",
    "describe_model",
    "efficientnet_lite0_weights_path",
    "load_backbone_weights",
    "param_counts",
    "read_state_dict",
    "register_model",
    "summary",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ferlab.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ferlab.models.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
