"""`Predictor`: the one object behind the CLI, the REST API and the web app.

photo -> faces (detector) -> crops the model was trained on -> calibrated probabilities,
one result per face, classes sorted by score (the report's `predict_single_image`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from ferlab.data.imageio import as_rgb
from ferlab.errors import FerlabError
from ferlab.models.calibration import softmax
from ferlab.inference.detection import Face, FaceDetector, create_detector
from ferlab.inference.engine import TTA, BackendName, Classifier, Precision
from ferlab.inference.preprocess import DEFAULT_MARGIN, crop_face, whole_image_face
from ferlab.models.bundle import ModelBundle, load_bundle
from ferlab.models.prior import PRIORS, Prior, class_prior, rebalance

ImageInput = str | Path | bytes | Image.Image | np.ndarray
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = "ferplus8"
UNCERTAIN_BELOW = 0.5


@dataclass
class FacePrediction:
    """One face: where it is and what it shows, with calibrated confidence."""

    box: tuple[int, int, int, int]
    """x, y, width, height in image pixels (the whole image when detection is off)."""
    detector_score: float | None
    probabilities: dict[str, float]
    """Every class with its calibrated probability, highest first."""
    uncertain: bool
    landmarks: tuple[tuple[float, float], ...] | None = None
    """The detector's five landmarks in image pixels (right eye, left eye, nose tip, right and left
    mouth corner, subject's sides), or None."""
    detected: Face | None = field(default=None, repr=False, compare=False)
    """The detection this prediction was cropped from (`crop_face(rgb, p.detected, ...)` redoes the crop)."""

    @property
    def label(self) -> str:
        return next(iter(self.probabilities))

    @property
    def confidence(self) -> float:
        return next(iter(self.probabilities.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": list(self.box),
            "detector_score": self.detector_score,
            "label": self.label,
            "confidence": self.confidence,
            "uncertain": self.uncertain,
            "probabilities": self.probabilities,
            "landmarks": None if self.landmarks is None else [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
        }


class Faces(list[FacePrediction]):
    """The faces of one image; when empty, `reason` says why."""

    def __init__(self, items: Iterable[FacePrediction] = (), reason: str | None = None) -> None:
        super().__init__(items)
        self.reason = reason


def shipped_models() -> dict[str, Path]:
    """Models that ship inside the package, by name."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.pt"))}


def resolve_model(name_or_path: str | Path | None = None) -> Path:
    """A model file from a path (model.pt or run folder) or the name of a shipped model."""
    reference = name_or_path or DEFAULT_MODEL
    path = Path(reference).expanduser()
    if path.exists():
        return path
    shipped = shipped_models()
    if str(reference) in shipped:
        return shipped[str(reference)]
    raise FerlabError(
        f"no model {str(reference)!r}: not a file or run folder, and not a shipped model "
        f"({', '.join(shipped) or 'none shipped'})"
    )


def model_label(reference: str | Path | None, path: Path) -> str:
    """A short name for a resolved model: the shipped name, the run folder's name or the file's stem."""
    if reference is None or (str(reference) in shipped_models() and not Path(reference).exists()):
        return DEFAULT_MODEL if reference is None else str(reference)
    if path.is_dir():
        return path.resolve().name
    return path.resolve().parent.name if path.name == "model.pt" else path.stem


class Predictor:
    """Detects faces and classifies their expressions with one model."""

    def __init__(
        self,
        bundle: ModelBundle,
        detector: str | FaceDetector = "auto",
        backend: BackendName = "auto",
        precision: Precision = "auto",
        threads: int | None = 1,
        uncertain_below: float = UNCERTAIN_BELOW,
        margin: float = DEFAULT_MARGIN,
        align: bool = True,
        tta: TTA = "none",
        prior: Prior = "train",
    ) -> None:
        """`align=True` warps each face's landmarks onto the training crops' template; `False`
        crops by the detector's box (ferlab.inference.preprocess). `prior="uniform"` rebalances
        the probabilities as if every class were equally common (ferlab.models.prior)."""
        if prior not in PRIORS:
            raise FerlabError(f"unknown prior {prior!r}; use {' or '.join(PRIORS)}")
        self.bundle = bundle
        self.class_prior = class_prior(bundle.info, bundle.spec.num_classes) if prior == "uniform" else None
        self.classifier = Classifier(bundle, backend, precision, threads)
        self._detector = detector
        self._detector_lock = threading.Lock()  # OpenCV and MediaPipe detectors are not thread-safe
        self.uncertain_below = uncertain_below
        self.margin = margin
        self.align = align
        self.tta = tta

    @property
    def classes(self) -> tuple[str, ...]:
        return self.bundle.label_set.classes

    @property
    def detector(self) -> FaceDetector:
        """Created on first use, so `detect=False` users never load a detector."""
        if isinstance(self._detector, str):
            self._detector = create_detector(self._detector)
        return self._detector

    def detect(self, rgb: np.ndarray) -> list[Face]:
        detector = self.detector
        with self._detector_lock:
            return detector.detect(rgb)

    def crops(self, rgb: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        spec = self.bundle.spec
        if not faces:
            return np.zeros((0, spec.input_size, spec.input_size, spec.in_channels), np.uint8)
        return np.stack([crop_face(rgb, f, spec.input_size, spec.in_channels, self.margin, self.align) for f in faces])

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, K) for uint8 crops at the model's input size."""
        probabilities = softmax(self.classifier.logits(faces, self.tta), self.bundle.temperature)
        return probabilities if self.class_prior is None else rebalance(probabilities, self.class_prior)

    def _results(self, faces: Sequence[Face | tuple[int, int, int, int]], probabilities: np.ndarray) -> Faces:
        results = Faces()
        for face, row in zip(faces, probabilities):
            order = np.argsort(-row)
            ranked = {self.classes[i]: float(row[i]) for i in order}
            uncertain = float(row[order[0]]) < self.uncertain_below
            if isinstance(face, Face):
                results.append(FacePrediction(face.box, face.score, ranked, uncertain, face.landmarks, face))
            else:
                results.append(FacePrediction(face, None, ranked, uncertain))
        return results

    def predict(self, image: ImageInput, *, detect: bool = True, bgr: bool = False) -> Faces:
        """One result per face, largest face first; an empty `Faces` with a reason if none."""
        return self.predict_many([image], detect=detect, bgr=bgr)[0]

    def predict_many(self, images: Sequence[ImageInput], *, detect: bool = True, bgr: bool = False) -> list[Faces]:
        """Like `predict` for several images, classifying all their faces in one batch."""
        spec = self.bundle.spec
        per_image: list[list[Face | tuple[int, int, int, int]]] = []
        crops: list[np.ndarray] = []
        for image in images:
            rgb = as_rgb(image, bgr=bgr)
            height, width = rgb.shape[:2]
            if detect:
                faces = self.detect(rgb)
                per_image.append(list(faces))
                crops.append(self.crops(rgb, faces))
            else:
                per_image.append([(0, 0, width, height)])
                crops.append(whole_image_face(rgb, spec.input_size, spec.in_channels)[None])
        probabilities = self.classify(np.concatenate(crops)) if crops else np.zeros((0, len(self.classes)))
        results, start = [], 0
        for boxes in per_image:
            faces = self._results(boxes, probabilities[start : start + len(boxes)])
            start += len(boxes)
            if not faces:
                faces.reason = "no face found (try detect=False for an image that is already a face crop)"
            results.append(faces)
        return results


def load(name_or_path: str | Path | None = None, **options: Any) -> Predictor:
    """A `Predictor` for a shipped model name, a model.pt or a run folder (default: the shipped default)."""
    return Predictor(load_bundle(resolve_model(name_or_path)), **options)
