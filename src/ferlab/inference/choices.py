"""The inference choices every front end offers, each defined once: the face detector, the
runtime (`backend`) and the numeric precision, with their values, defaults, validation and
help text.

Kept free of OpenCV and ONNX Runtime, so that the CLI can describe its options without
loading them (ferlab.models.choices has the device and test-time augmentation, and
ferlab.models.prior the class prior; `check_options` checks them all).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, get_args

from ferlab.errors import FerlabError
from ferlab.models.choices import DEFAULT_DEVICE, check_device, chosen_tta
from ferlab.models.prior import DEFAULT_PRIOR, Prior, prior_strength

DETECTOR_CHOICES = ("auto", "yunet", "yunet-960", "haar", "mediapipe")
"""`auto` is YuNet (haar where onnxruntime is missing); ferlab.inference.detection has each one."""
DEFAULT_DETECTOR = "auto"
DETECTOR_HELP = (
    "Face detector: auto (yunet; haar without onnxruntime), yunet, yunet-960 (more small faces, "
    "twice the time), haar or mediapipe."
)


def check_detector(name: str) -> str:
    """A detector name this ferlab knows, refused before any image is read when it is not."""
    if name not in DETECTOR_CHOICES:
        raise FerlabError(f"unknown face detector {name!r}; use {', '.join(DETECTOR_CHOICES)}")
    return name


BackendName = Literal["auto", "onnx", "torch"]
BACKENDS: tuple[str, ...] = get_args(BackendName)
DEFAULT_BACKEND: BackendName = "auto"
BACKEND_HELP = "auto (ONNX Runtime if installed), onnx or torch: what runs the network."
Precision = Literal["auto", "fp32", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEFAULT_PRECISION: Precision = "auto"
PRECISION_HELP = "auto (int8 where the model has an int8 export, on the CPU), fp32 or int8."


def check_choices(backend: str, precision: str) -> None:
    """A backend and a precision this ferlab knows, and that go together."""
    if backend not in BACKENDS:
        raise FerlabError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise FerlabError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if backend == "torch" and precision == "int8":
        raise FerlabError("int8 runs on the onnx backend only")


def check_options(
    detector: str = DEFAULT_DETECTOR,
    backend: str = DEFAULT_BACKEND,
    precision: str = DEFAULT_PRECISION,
    tta: str | None = None,
    prior: Prior | None = None,
    device: str = DEFAULT_DEVICE,
) -> None:
    """Every predictor option at once, before any model is loaded: the `Predictor` checks its
    arguments here, and a launcher (`ferlab app`) its flags before it starts a server."""
    check_detector(detector)
    check_choices(backend, precision)
    chosen_tta(tta)
    prior_strength(DEFAULT_PRIOR if prior is None else prior)
    check_device(device)


OPTIONS_ENV = "FERLAB_PREDICTOR_OPTIONS"
"""The predictor options (`--detector`, `--tta`, `--prior`, ...) `ferlab app` hands the web app it
starts in another process, as a JSON object."""


def options_to_env(options: Mapping[str, object]) -> str:
    return json.dumps({key: value for key, value in options.items() if value is not None})


def options_from_env(environment: Mapping[str, str]) -> dict[str, Any]:
    """The options a launcher handed over (none: every default)."""
    text = environment.get(OPTIONS_ENV)
    try:
        options = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise FerlabError(f"${OPTIONS_ENV} is not JSON ({exc})") from None
    if not isinstance(options, dict):
        raise FerlabError(f"${OPTIONS_ENV} must be a JSON object of predictor options")
    return options
