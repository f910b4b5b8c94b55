"""Experiment configuration: a YAML/TOML file plus `--set key=value` overrides.

An experiment is a config file and a run folder; the resolved config is written into the
run folder, so a run can always be repeated and compared with others.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from ferlab.errors import FerlabError
from ferlab.models.choices import AUTO_DEVICES, is_device


@dataclass
class DataConfig:
    """Which dataset to train on. Images are loaded at the model's input size and channels
    (set those with model.params.input_size / in_channels)."""

    path: str = ""
    format: str = "auto"
    ferplus_labels: str | None = None
    ferplus_majority: str = "strict"
    label_set: str | None = None
    """Remap the dataset's labels to this label set (e.g. `five`), dropping other classes."""
    split_seed: int = 0
    max_train_samples: int | None = None
    """Use a stratified random subset of the training split (quick experiments, tests)."""
    val_clean: str | None = None
    """A clean list from `ferlab data audit --query-split val --write-clean-split`: model
    selection, early stopping and the calibration temperature use only those validation
    images, so near-copies of training images (memorised, not recognised) cannot steer them."""
    second_labels: str | None = None
    """A two-head run: the csv mapping FER2013 Training files to FER+ images
    (`fer2013_train_to_ferplus.csv`: `file,sharp_source`) that gives each FER+ training image its
    FER2013 class; a second head on the same backbone learns those 7 classes beside the first."""


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
    """Standard deviation of the Gaussian pixel noise, as a share of 255."""
    noise_max: float = 0.0
    """Above `noise`: each face's noise level is drawn uniformly between `noise` and this, so a
    model sees clean and very noisy faces alike (off: the same level for every face)."""
    blur: float = 0.0
    """Probability that a face is Gaussian-blurred (sigma up to `blur_sigma` pixels at 48 px)."""
    blur_sigma: float = 1.5
    low_res: float = 0.0
    """Probability that a face is shrunk to `low_res_min`..input size and scaled back up."""
    low_res_min: int = 16
    erase: float = 0.0
    """Probability of random erasing: a rectangle of 2-20 % of the face filled with one grey level."""
    clean_share: float = 0.0
    """Probability that a face skips the photometric changes and corruptions (geometric ones
    still apply), so a model trained for corrupted faces keeps seeing clean ones."""


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
    teacher: str | None = None
    """Knowledge distillation: a trained ferlab model (a shipped name, run folder or model.pt),
    or an ensemble of them (`A+B`), with the same classes and channels, whose softened
    predictions on the training images are extra targets."""
    distill_weight: float = 0.5
    """Share of the loss given to matching the teacher (the rest goes to the labels)."""
    distill_temperature: float = 4.0
    """Softmax temperature of both teacher and student in the distillation term."""
    second_head_weight: float = 0.5
    """With data.second_labels: the second head's cross-entropy is added to the loss times this
    (images without a second label add nothing)."""
    calibrate_on: str = "clean"
    """Validation images the temperature is fitted on: clean, or augmented (each clean image and
    one copy under the training augmentation), so that confidence also holds on degraded faces."""
    tta: str = "none"
    """Test-time augmentation the model is served with: none, or flip (each face and its mirror
    image, logits averaged, at twice the compute). The temperature is fitted and the test split
    scored through it, and predictors use it unless told otherwise."""
    interpolate: float = 1.0
    """Share of the fine-tuned weights in the final model, the rest taken from the starting
    weights (`model.params.pretrained`): 1 keeps the fine-tuned weights, 0.5 is their midpoint.
    Weight-space ensembling (WiSE-FT, Wortsman et al., 2022): a fine-tune for robustness
    gives back part of the starting model's clean accuracy without costing inference time."""
    bf16: bool = True
    channels_last: bool = True
    threads: int = 0
    """torch threads; 0 = every core."""
    device: str = "auto"
    """auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps; `ferlab train --device` overrides it."""
    sync_bn: bool = False
    """With several processes on GPUs, batch norm uses the statistics of the whole global batch."""


@dataclass
class FinetuneConfig:
    """Two-phase transfer learning: phase 1 trains the head on a frozen backbone, phase 2
    unfreezes the top `unfreeze_top` backbone layers at a low learning rate."""

    enabled: bool = False
    unfreeze_top: int = 50
    layer_count: str = "weights"
    """What `unfreeze_top` counts: weights (modules with parameters) or keras (every layer of the
    Keras model the backbone reproduces, as Keras' ``base.layers[-k:]``; resnet50v2 only)."""
    lr: float = 1e-5
    epochs: int = 10
    early_stopping_patience: int = 3
    freeze_batchnorm: bool = True
    """Keep the backbone's batch-norm layers frozen in inference mode while fine-tuning (what Keras
    does when the backbone is called with training=False): batch statistics can wreck pretrained
    features. false: an unfrozen batch-norm layer trains (batch statistics, moving averages, scale
    and shift), as a Keras layer set trainable does otherwise; frozen ones stay in inference mode."""


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
    "data.format": ("auto", "folder", "fer2013-csv", "ferplus-folder"),
    "augment.policy": ("none", "geometric", "photometric", "both"),
    "train.optimizer": ("adam", "sgd"),
    "train.scheduler": ("plateau", "cosine", "none"),
    "train.monitor": ("val_accuracy", "val_macro_f1", "val_loss"),
    "train.targets": ("hard", "votes"),
    "train.calibrate_on": ("clean", "augmented"),
    "train.tta": ("none", "flip"),
    "finetune.layer_count": ("weights", "keras"),
    "data.ferplus_majority": ("strict", "plurality"),
}


@dataclass(frozen=True)
class Range:
    """The values a numeric key accepts: low..high, either end open (excluded)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    note: str = ""
    """What a special value means, for the error message."""

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, key: str) -> str:
        """`0 < train.lr <= 10`."""
        number = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
        return (
            f"{number(self.low)} {'<' if self.low_open else '<='} {key} "
            f"{'<' if self.high_open else '<='} {number(self.high)}" + (f" ({self.note})" if self.note else "")
        )


_ANY_SEED = Range(0, 2**32 - 1)  # numpy's seeds
_COUNT = Range(0, 100_000)
_PROBABILITY = Range(0.0, 1.0)
_LR = Range(0.0, 10.0, low_open=True)
RANGES: dict[str, Range] = {
    "seed": _ANY_SEED,
    "data.split_seed": _ANY_SEED,
    "data.max_train_samples": Range(1, 1_000_000_000, note="leave it out for every training image"),
    "augment.rotation": Range(0.0, 180.0),  # degrees either way
    "augment.zoom": Range(0.0, 0.9),  # scale drawn from 1 - zoom .. 1 + zoom
    "augment.shift": Range(0.0, 1.0),  # share of the image size either way
    "augment.brightness": _PROBABILITY,  # share of the 0..255 range either way
    "augment.contrast": _PROBABILITY,
    "augment.noise": _PROBABILITY,  # standard deviation as a share of 255
    "augment.noise_max": _PROBABILITY,
    "augment.blur": _PROBABILITY,
    "augment.blur_sigma": Range(0.0, 24.0, low_open=True),  # pixels at 48 px
    "augment.low_res": _PROBABILITY,
    "augment.low_res_min": Range(4, 4096),
    "augment.erase": _PROBABILITY,
    "augment.clean_share": _PROBABILITY,
    "train.epochs": Range(1, 100_000),
    "train.batch_size": Range(2, 65_536),
    "train.lr": _LR,
    "train.momentum": Range(0.0, 1.0, high_open=True),
    "train.weight_decay": _PROBABILITY,
    "train.plateau_factor": Range(0.0, 1.0, low_open=True, high_open=True),
    "train.plateau_patience": _COUNT,
    "train.min_lr": Range(0.0, 10.0),
    "train.warmup_epochs": _COUNT,
    "train.early_stopping_patience": Range(1, 100_000),
    "train.label_smoothing": _PROBABILITY,
    "train.mixup_alpha": Range(0.0, 100.0, note="0 turns mixup off"),
    "train.distill_weight": _PROBABILITY,
    "train.distill_temperature": Range(0.0, 100.0, low_open=True),
    "train.second_head_weight": Range(0.0, 10.0, low_open=True),
    "train.interpolate": Range(0.0, 1.0, low_open=True, note="1 keeps the fine-tuned weights"),
    "train.threads": Range(0, 4096, note="0 uses every core"),
    "finetune.unfreeze_top": _COUNT,
    "finetune.lr": _LR,
    "finetune.epochs": Range(1, 100_000),
    "finetune.early_stopping_patience": Range(1, 100_000),
}
"""The allowed range of every numeric config key (docs/reliability.md has the same table)."""

_RUN_NAME_BYTES = 200


def check_run_name(name: str) -> None:
    """A run name is a plain folder name: it can never point outside the runs folder."""
    if not name.strip():
        raise FerlabError("config name (the run folder's name) must not be empty")
    bad = next((c for c in name if c in "/\\" or not c.isprintable()), None)
    if bad is not None or ".." in name or name.startswith("."):
        raise FerlabError(
            f"config name {name!r} is not a plain folder name: use no path separators, "
            "control characters or '..', and do not start it with '.'"
        )
    if len(name.encode()) > _RUN_NAME_BYTES:
        raise FerlabError(f"config name is {len(name.encode())} bytes long; the limit is {_RUN_NAME_BYTES}")


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
    unknown = sorted(str(k) for k in set(values) - set(known))
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
        elif value is None and default is not None:
            raise FerlabError(f"config {where}{name} needs a value (it has no 'none' setting)")
        else:
            kwargs[name] = _coerce(
                value, default if default is not None else _example_of(hints[name]), f"{where}{name}"
            )
    return cls(**kwargs)


def _example_of(hint: Any) -> Any:
    """A value of the type inside `Optional[...]`, so a key whose default is None is type-checked too."""
    inner = [arg for arg in get_args(hint) if arg is not type(None)]
    return inner[0]() if len(inner) == 1 and inner[0] in (str, int, float, bool) else None


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Check a value against its default's type (ints are accepted where floats are)."""
    if default is None or value is None:
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise FerlabError(f"config {key} must be a table of options, got {_shown(value)}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise FerlabError(f"config {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool) and isinstance(value, (int, float)):
        if isinstance(default, int) and not isinstance(value, int):
            if not math.isfinite(value) or not value.is_integer():
                raise FerlabError(f"config {key} must be a whole number, got {value!r}")
            return int(value)
        return type(default)(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise FerlabError(f"config {key} must be a {type(default).__name__}, got {_shown(value)}")


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 3, 80, 80
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 6


def _shown(value: Any, limit: int = 80) -> str:
    """A value for an error message: a bounded repr (a YAML alias bomb never gets expanded), cut
    short so the message stays one line."""
    text = " ".join(_SHOWN.repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


CONFIG_NODES = 100_000
"""Most values (list items, keys, scalars, counted as YAML aliases expand them) a config may hold."""


def _check_size(value: Any, where: str) -> None:
    """Refuse a value that expands to more than CONFIG_NODES items: a few hundred bytes of nested
    YAML aliases ("billion laughs") would otherwise take gigabytes in any copy or dump of it."""
    count, pending = 0, [value]
    while pending:
        node = pending.pop()
        count += 1
        if count > CONFIG_NODES:
            raise FerlabError(
                f"{where} expands to over {CONFIG_NODES:,} values (nested YAML aliases?); a config is far smaller"
            )
        if isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, (list, tuple)):
            pending.extend(node)


def check_ranges(config: ExperimentConfig) -> None:
    """Every numeric key within its documented range, or one line naming key, value and range."""
    flat = config.flat()
    for key, allowed in RANGES.items():
        value = flat[key]
        if value is not None and value not in allowed:
            raise FerlabError(f"config {key} = {value!r} is out of range: allowed {allowed.describe(key)}")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise FerlabError(f"--set {dotted}: {part} is not a table")
    node[leaf] = value


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML, with YAML 1.2's floats: `3e-4` is a number (YAML 1.1 wants `3.0e-4`)."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def parse_yaml(text: str) -> Any:
    """A config value or file: safe YAML in which `3e-4` is a float."""
    return yaml.load(text, Loader=_ConfigLoader)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["train.lr=0.01", "augment.policy=both"]` -> nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise FerlabError(f"--set expects key=value, got {_shown(item)}")
        try:
            value = parse_yaml(raw) if raw.strip() else None
        except (yaml.YAMLError, RecursionError) as exc:
            reason = " ".join(str(exc).split()) if isinstance(exc, yaml.YAMLError) else "nested too deeply"
            raise FerlabError(f"--set {key.strip()}: the value is not valid YAML ({reason})") from None
        _check_size(value, f"--set {key.strip()}")
        _set_dotted(tree, key.strip(), value)
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
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        loaded = parse_yaml(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = " ".join(str(exc).split()) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise FerlabError(
            f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'} ({reason})"
        ) from None
    if loaded is None:
        return {}
    _check_size(loaded, str(path))
    if not isinstance(loaded, dict):
        raise FerlabError(f"{path}: a config must be a mapping of keys")
    return loaded


def build_config(values: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    """A checked config: known keys, right types, every number in its range (`RANGES`), a plain
    run name. Raises a one-line FerlabError before any data is loaded."""
    if not isinstance(values, dict):
        raise FerlabError("a config must be a mapping of keys")
    config: ExperimentConfig = _build(ExperimentConfig, _merge(values, parse_overrides(overrides or [])), "")
    for key, allowed in _CHOICES.items():
        value = config.flat().get(key)
        if value not in allowed:
            raise FerlabError(f"config {key} must be one of {', '.join(allowed)}, got {_shown(value)}")
    check_run_name(config.name)
    if not is_device(config.train.device, auto=True):
        raise FerlabError(f"config train.device must be {AUTO_DEVICES}, got {_shown(config.train.device)}")
    if not config.data.path:
        raise FerlabError("config data.path is required (the dataset to train on)")
    check_ranges(config)
    augment = config.augment
    if 0 < augment.noise_max < augment.noise:
        raise FerlabError(
            f"config augment.noise_max ({augment.noise_max:g}) is below augment.noise ({augment.noise:g}): "
            "noise levels are drawn between the two, so give noise_max above noise, or 0 for one level"
        )
    if config.train.interpolate < 1 and not config.model.params.get("pretrained"):
        raise FerlabError(
            f"config train.interpolate ({config.train.interpolate:g}) mixes the fine-tuned weights with the "
            "starting ones, so it needs model.params.pretrained (the weights the fine-tune starts from)"
        )
    return config


def load_config(path: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    values = read_config_file(path)
    values.setdefault("name", path.stem)
    return build_config(values, overrides)
