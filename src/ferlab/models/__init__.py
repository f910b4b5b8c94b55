"""The model zoo: `create_model(name, num_classes, **options)` and friends.

>>> from ferlab.models import create_model, available_models, summary
>>> model = create_model("seed_cnn", 7)            # 48x48 gray -> 7 logits
>>> model.spec.input_size, model.spec.in_channels, model.spec.gradcam_layer
(48, 1, 'backbone.block4')

Transfer models (`mobilenet_v2`, `efficientnet_b0`, `efficientnet_lite0`, `resnet50v2`)
split into `model.backbone` and `model.head`; `model.freeze_backbone()` and
`model.unfreeze_top(k)` drive two-phase fine-tuning. Every model has the same split, so the
same calls work on scratch models too.
"""

from ferlab.models.base import FerModel, ModelSpec, param_counts, summary
from ferlab.models.pretrained import (
    efficientnet_lite0_weights_path,
    load_backbone_weights,
    read_state_dict,
)
from ferlab.models.registry import (
    available_models,
    create_model,
    default_config,
    describe_model,
    register_model,
)

__all__ = [
    "FerModel",
    "ModelSpec",
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
