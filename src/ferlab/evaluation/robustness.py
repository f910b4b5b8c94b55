"""Accuracy under corruptions: how a model holds up off its training distribution.

Each corruption is applied at three severities to the original faces (before they are
resized to the model's input), as photos, webcams and film stills degrade them: blur,
sensor noise, JPEG, low resolution, exposure, colour casts on an RGB face, rotation,
loose or shifted crops, and occlusion of the eyes or mouth. Every corruption is
deterministic for a given seed, so two models are always scored on the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.metrics import f1_score, recall_score

from ferlab.data.imageio import resize
from ferlab.errors import FerlabError
from ferlab.inference.engine import TTA, BackendName, LogitEngine, served_tta
from ferlab.inference.predictor import resolve_model
from ferlab.inference.preprocess import to_channels
from ferlab.models.bundle import load_bundle
from ferlab.models.calibration import softmax
from ferlab.models.prior import class_prior, rebalance

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
"""(uint8 RGB face (H, W, 3), severity 1..3, rng) -> corrupted uint8 RGB face."""

SEVERITIES = (1, 2, 3)


def _clip(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _scaled(face: np.ndarray, pixels_at_48: float) -> float:
    """A length given for a 48 px face, at this face's size."""
    return pixels_at_48 * face.shape[0] / 48


def gaussian_blur(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _scaled(face, (1.0, 1.6, 2.4)[severity - 1])
    return cv2.GaussianBlur(face, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


def gaussian_noise(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    std = (0.05, 0.09, 0.14)[severity - 1] * 255
    grey = rng.normal(0, std, face.shape[:2])[..., None]  # luminance noise, as a camera sensor
    return _clip(face + grey)


def jpeg(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = (30, 15, 8)[severity - 1]
    ok, encoded = cv2.imencode(".jpg", face[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise FerlabError("OpenCV could not round-trip a face through JPEG")
    return np.ascontiguousarray(decoded[..., ::-1])


def low_resolution(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Down to 24, 20 or 16 px and back up, as a small face in a frame."""
    low = (24, 20, 16)[severity - 1]
    small = cv2.resize(face, (low, low), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, face.shape[1::-1], interpolation=cv2.INTER_LINEAR)


def brightness_contrast(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Flattened contrast with the exposure pushed up or down (the sign is drawn per face)."""
    contrast = (0.6, 0.45, 0.3)[severity - 1]
    shift = (0.15, 0.22, 0.3)[severity - 1] * 255 * rng.choice((-1, 1))
    mean = face.mean()
    return _clip((face.astype(np.float32) - mean) * contrast + mean + shift)


def colour(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A colour cast (warm tungsten, green fluorescent or blue daylight, drawn per face) on an
    RGB face: a grey model sees it through its RGB-to-grey conversion."""
    strength = (0.15, 0.3, 0.45)[severity - 1]
    casts = np.array([[1, 0.1, -1], [-0.5, 1, -0.5], [-1, 0, 1]], dtype=np.float32)
    gains = 1 + strength * casts[rng.integers(len(casts))]
    return _clip(face.astype(np.float32) * gains)


def rotation(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    angle = (10, 20, 30)[severity - 1] * rng.choice((-1, 1))
    height, width = face.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), float(angle), 1.0)
    return cv2.warpAffine(face, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def scale_shift(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A looser or tighter, off-centre crop, as a detector's box may give."""
    scale = (0.85, 0.75, 1.25)[severity - 1]
    shift = (0.06, 0.1, 0.12)[severity - 1] * face.shape[0]
    dx, dy = shift * rng.choice((-1, 1)), shift * rng.choice((-1, 1))
    height, width = face.shape[:2]
    matrix = np.array([[scale, 0, (1 - scale) * width / 2 + dx], [0, scale, (1 - scale) * height / 2 + dy]])
    return cv2.warpAffine(face, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def occlusion(face: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A dark bar over the eyes (1), a patch over the mouth (2), or both (3)."""
    out = face.copy()
    height, width = face.shape[:2]
    if severity in (1, 3):
        out[int(0.28 * height) : int(0.45 * height), int(0.1 * width) : int(0.9 * width)] = 20
    if severity in (2, 3):
        out[int(0.66 * height) : int(0.88 * height), int(0.28 * width) : int(0.72 * width)] = 20
    return out


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_blur": gaussian_blur,
    "gaussian_noise": gaussian_noise,
    "jpeg": jpeg,
    "low_resolution": low_resolution,
    "brightness_contrast": brightness_contrast,
    "colour": colour,
    "rotation": rotation,
    "scale_shift": scale_shift,
    "occlusion": occlusion,
}


def corrupt(faces: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply one corruption to uint8 RGB faces (N, H, W, 3), the same pixels for the same seed."""
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(name), severity])
    function = CORRUPTIONS[name]
    return np.stack([function(face, severity, rng) for face in faces])


def model_input(faces: np.ndarray, size: int, channels: int) -> np.ndarray:
    """RGB faces at any size -> the model's input, through the same conversion as inference."""
    return np.stack([resize(to_channels(face, channels), size) for face in faces])


def balanced_subsample(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices of an equal number of faces per class (the rarest class's count), seeded."""
    rng = np.random.default_rng(seed)
    present = np.unique(labels)
    per_class = min(int((labels == c).sum()) for c in present)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in present]))


@dataclass
class Score:
    accuracy: float
    macro_f1: float

    @classmethod
    def of(cls, labels: np.ndarray, predicted: np.ndarray, classes: int) -> Score:
        return cls(
            float((labels == predicted).mean()),
            float(f1_score(labels, predicted, labels=range(classes), average="macro", zero_division=0)),
        )


def per_class_recall(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    return recall_score(labels, predicted, labels=range(classes), average=None, zero_division=0)


class ScoredModel:
    """A model whose outputs are restricted to, and ordered as, a dataset's classes, fed with
    RGB faces of any size through the same conversion as inference."""

    def __init__(
        self, reference: str, data_classes: tuple[str, ...], backend: BackendName = "onnx", tta: TTA | None = None
    ) -> None:
        self.bundle = load_bundle(resolve_model(reference))
        self.tta = served_tta(self.bundle.record.tta) if tta is None else tta  # None: as served
        model_classes = self.bundle.record.labels.classes
        missing = [c for c in data_classes if c not in model_classes]
        if missing:
            raise FerlabError(f"{reference} does not predict {', '.join(missing)}, which the data has")
        self.outputs = [model_classes.index(c) for c in data_classes]
        self.engine = LogitEngine.for_bundle(self.bundle, backend, threads=None)  # a benchmark may use every core

    def logits(self, rgb_faces: np.ndarray) -> np.ndarray:
        record = self.bundle.record
        faces = model_input(rgb_faces, record.input_size, record.in_channels)
        return self.engine.logits(faces, self.tta)[:, self.outputs]

    def probabilities(
        self, logits: np.ndarray, temperature: float | None = None, prior_strength: float = 0.0
    ) -> np.ndarray:
        """Softmax at the model's temperature (or another), optionally rebalanced towards uniform classes
        (strength 1: all the way; ferlab.models.prior)."""
        probabilities = softmax(logits, self.bundle.record.temperature if temperature is None else temperature)
        if prior_strength > 0:
            prior = class_prior(self.bundle.record.class_prior, self.bundle.record.num_classes)[self.outputs]
            probabilities = rebalance(probabilities, prior, prior_strength)
        return probabilities
