"""Experiment configuration: a YAML/TOML file plus `--set key=value` overrides.

An experiment is a config file and a run folder; the resolved config is written into the
run folder, so a run can always be repeated and compared with others.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, get_args, get_type_hints

import yaml

from ferlab.errors import FerlabError


@dataclass
class DataConfig:
    """Which dataset to train on. Images are loaded at the model's input size and channels
    (set those with model.params.input_size / in_channels)."""

    path: str = ""
    format: str = "auto"
    ferplus_labels: Optional[str] = None
    ferplus_majority: str = "strict"
    label_set: Optional[str] = None
    """Remap the dataset's labels to this label set (e.g. `five`), dropping other classes."""
    split_seed: int = 0
    max_train_samples: Optional[int] = None
    """Use a stratified random subset of the training split (quick experiments, tests)."""
    val_clean: Optional[str] = None
    """A clean list from `ferlab data audit --query-split val --write-clean-split`: model
    selection, early stopping and the calibration temperature use only those validation
    images, so near-copies of training images (memorised, not recognised) cannot steer them."""


@dataclass
class ModelConfig:
    name: str = "seed_cnn"
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the registered model (e.g. dropout, width, pretrained)."""


@dataclass
class AugmentConfig:
    policy: str = "none"
    """none, geometric (rotation, zoom, shift, flip), photometric (brightness, contrast, noise) or both."""
    rotation: float = 10.0
    zoom: float = 0.1
    shift: float = 0.1
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    noise: float = 0.03


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    """adam or sgd (SGD uses Nesterov momentum)."""
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    """L2 penalty (coupled, as Keras' kernel L2 and torch's Adam weight_decay)."""
    scheduler: str = "plateau"
    """plateau (ReduceLROnPlateau), cosine (with linear warm-up) or none."""
    plateau_factor: float = 0.2
    plateau_patience: int = 3
    min_lr: float = 1e-6
    warmup_epochs: int = 0
    early_stopping_patience: int = 8
    """Epochs without validation improvement before stopping; the best weights are restored."""
    monitor: str = "val_accuracy"
    """val_accuracy, val_macro_f1 or val_loss."""
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    class_weights: bool = False
    """Balanced class weights in the loss (as the 5-class report)."""
    weighted_sampling: bool = False
    """Draw training batches with probability inversely proportional to class size."""
    targets: str = "hard"
    """hard (majority labels) or votes (FER+ vote distribution as soft targets)."""
    teacher: Optional[str] = None
    """Knowledge distillation: a trained ferlab model (run folder or model.pt) with the same
    classes and input whose softened predictions on the training images are extra targets."""
    distill_weight: float = 0.5
    """Share of the loss given to matching the teacher (the rest goes to the labels)."""
    distill_temperature: float = 4.0
    """Softmax temperature of both teacher and student in the distillation term."""
    bf16: bool = True
    channels_last: bool = True
    threads: int = 0
    """torch threads; 0 = every core."""


@dataclass
class FinetuneConfig:
    """Two-phase transfer learning: phase 1 trains the head on a frozen backbone, phase 2
    unfreezes the top `unfreeze_top` backbone layers at a low learning rate."""

    enabled: bool = False
    unfreeze_top: int = 50
    lr: float = 1e-5
    epochs: int = 10
    early_stopping_patience: int = 3
    freeze_batchnorm: bool = True
    """Keep the backbone's batch-norm layers frozen in inference mode while fine-tuning:
    switching them to batch statistics wrecks the pretrained features (Keras' training=False)."""


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """{"train.lr": 0.001, "model.params.width": 32, ...} for experiment tables."""
        return _flatten(self.to_dict())


_CHOICES: dict[str, tuple[str, ...]] = {
    "augment.policy": ("none", "geometric", "photometric", "both"),
    "train.optimizer": ("adam", "sgd"),
    "train.scheduler": ("plateau", "cosine", "none"),
    "train.monitor": ("val_accuracy", "val_macro_f1", "val_loss"),
    "train.targets": ("hard", "votes"),
    "data.ferplus_majority": ("strict", "plurality"),
}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate a config dataclass from a dict, rejecting unknown keys by name."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise FerlabError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"known in {where.rstrip('.') or 'the top level'}: {', '.join(known)}"
        )
    kwargs: dict[str, Any] = {}
    hints = get_type_hints(cls)
    for name, value in values.items():
        default = getattr(cls(), name) if name in known else None
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise FerlabError(f"config {where}{name} must be a table of keys")
            kwargs[name] = _build(type(default), value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, default if default is not None else _example_of(hints[name]), f"{where}{name}")
    return cls(**kwargs)


def _example_of(hint: Any) -> Any:
    """A value of the type inside `Optional[...]`, so a key whose default is None is type-checked too."""
    inner = [arg for arg in get_args(hint) if arg is not type(None)]
    return inner[0]() if len(inner) == 1 and inner[0] in (str, int, float, bool) else None


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Check a value against its default's type (ints are accepted where floats are)."""
    if default is None or value is None or isinstance(default, dict):
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise FerlabError(f"config {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool) and isinstance(value, (int, float)):
        if isinstance(default, int) and not isinstance(default, bool) and float(value) != int(value):
            raise FerlabError(f"config {key} must be a whole number, got {value!r}")
        return type(default)(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise FerlabError(f"config {key} must be a {type(default).__name__}, got {value!r}")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise FerlabError(f"--set {dotted}: {part} is not a table")
    node[leaf] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["train.lr=0.01", "augment.policy=both"]` -> nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise FerlabError(f"--set expects key=value, got {item!r}")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FerlabError(f"{path}: no such config file")
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(path.read_text())
        loaded = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise FerlabError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'} ({exc})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise FerlabError(f"{path}: a config must be a mapping of keys")
    return loaded


def build_config(values: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    config: ExperimentConfig = _build(ExperimentConfig, _merge(values, parse_overrides(overrides or [])), "")
    for key, allowed in _CHOICES.items():
        value = config.flat().get(key)
        if value not in allowed:
            raise FerlabError(f"config {key} must be one of {', '.join(allowed)}, got {value!r}")
    if not config.data.path:
        raise FerlabError("config data.path is required (the dataset to train on)")
    if config.train.batch_size < 2 or config.train.epochs < 1:
        raise FerlabError("config train.batch_size must be at least 2 and train.epochs at least 1")
    if not 0 <= config.train.distill_weight <= 1 or config.train.distill_temperature <= 0:
        raise FerlabError("config train.distill_weight must be between 0 and 1 and train.distill_temperature above 0")
    return config


def load_config(path: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    values = read_config_file(path)
    values.setdefault("name", path.stem)
    return build_config(values, overrides)
