"""The choices training and inference share, each defined once: where the network runs
(`device`) and the test-time augmentation a model is served with (`tta`).

Values, default, validation and help text live here, below both users, so that a config key,
a `Predictor` argument, an API option and a CLI flag accept and describe the same things.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

from ferlab.errors import FerlabError

DEVICES = "cpu, cuda, cuda:N or mps"
"""Where a network runs, as every command, config and error message spells it."""
AUTO_DEVICES = f"auto, {DEVICES}"
"""Training also takes `auto`: CUDA, then MPS, then the CPU."""
DEFAULT_DEVICE = "cpu"
"""Inference runs on the CPU unless asked (training defaults to `auto`)."""
DEVICE_HELP = (
    f"{DEVICES}: where the network runs (on a GPU: ONNX Runtime's CUDA provider where the gpu extra "
    "is installed, else torch)."
)
TRAIN_DEVICE_HELP = f"{AUTO_DEVICES}: where training runs (auto: CUDA, then MPS, then the CPU)."


def is_device(name: str, *, auto: bool = False) -> bool:
    """`cpu`, `cuda`, `cuda:N` or `mps` (and `auto` where `auto` is allowed)."""
    kind, colon, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps", *(("auto",) if auto else ())):
        return False
    return not colon or (kind == "cuda" and index.isdigit())


def check_device(name: str, *, auto: bool = False) -> str:
    """The device name, refused in one line when it is not one."""
    if not is_device(name, auto=auto):
        raise FerlabError(f"unknown device {name!r}; use {AUTO_DEVICES if auto else DEVICES}")
    return name


TTA = Literal["none", "flip", "tencrop"]
"""Test-time augmentation: one view per face, the face and its mirror image, or ten crops."""
TTA_CHOICES: tuple[str, ...] = ("auto", *get_args(TTA))
"""What a front end takes: `auto` serves the model as it was finished (`train.tta`)."""
DEFAULT_TTA = "auto"
TTA_HELP = (
    "auto (as the model is served: its card says which), none (one view per face: fastest), "
    "flip (the face and its mirror image, twice the time) or tencrop (ten crops, ten times)."
)


def check_tta(tta: str) -> TTA:
    """A test-time augmentation this ferlab knows, refused by name when it is not."""
    if tta not in get_args(TTA):
        raise FerlabError(f"unknown test-time augmentation {tta!r}; use {', '.join(get_args(TTA))}")
    return cast(TTA, tta)


def chosen_tta(tta: str | None) -> TTA | None:
    """A front end's choice: a TTA, or None for `auto` (and None): as the model is served."""
    if tta is None or tta == "auto":
        return None
    if tta not in get_args(TTA):
        raise FerlabError(f"unknown test-time augmentation {tta!r}; use {', '.join(TTA_CHOICES)}")
    return cast(TTA, tta)
