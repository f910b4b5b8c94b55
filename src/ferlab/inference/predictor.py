"""`Predictor`: the one object behind the CLI, the REST API and the web app.

photo -> faces (detector) -> crops the model was trained on -> calibrated probabilities,
one result per face, classes sorted by score (the report's `predict_single_image`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from ferlab.data.imageio import as_rgb
from ferlab.errors import FerlabError
from ferlab.inference.annotate import FaceLabel, draw, title
from ferlab.inference.choices import DEFAULT_DETECTOR, check_options
from ferlab.inference.detection import Face, FaceDetector, create_detector
from ferlab.inference.engine import TTA, BackendName, LogitEngine, Precision
from ferlab.inference.member import Input, Member
from ferlab.inference.preprocess import DEFAULT_MARGIN, crop_face, whole_image_face
from ferlab.inference.results import Record, csv_text, json_text
from ferlab.labels import LabelSet
from ferlab.models.choices import DEFAULT_DEVICE, chosen_tta
from ferlab.models.prior import Prior
from ferlab.models.record import ModelRecord
from ferlab.models.shipped import (
    DEFAULT_MODEL,
    ENSEMBLE_SEPARATOR,
    member_references,
    model_label,
    resolve_model,
    shipped_models,
)

if TYPE_CHECKING:
    from ferlab.models.bundle import ModelBundle

ImageInput = str | Path | bytes | Image.Image | np.ndarray
UNCERTAIN_BELOW = 0.5
__all__ = [
    "DEFAULT_MODEL",
    "FacePrediction",
    "Faces",
    "Predictor",
    "load",
    "model_label",
    "resolve_model",
    "shipped_models",
]


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

    def drawing(self, number: int | str) -> FaceLabel:
        """What the renderer draws for this face as face `number`."""
        return FaceLabel(
            self.box,
            title(number, self.label, self.confidence),
            list(self.probabilities.items()),
            self.uncertain,
            self.landmarks,
        )


class Faces(list[FacePrediction]):
    """The faces of one image, largest first; when empty, `reason` says why.

    A list (callers index and loop over it) that also renders and tabulates itself, so the
    CLI, the video writer, the web app and library users draw and write results one way.
    """

    def __init__(
        self, items: Iterable[FacePrediction] = (), reason: str | None = None, classes: Sequence[str] = ()
    ) -> None:
        super().__init__(items)
        self.reason = reason
        self.classes = tuple(classes) or tuple(dict.fromkeys(c for face in self for c in face.probabilities))
        """The model's classes in its own order: the table's columns."""

    def draw(self, rgb: np.ndarray, top: int = 3) -> np.ndarray:
        """A copy of the image with each face's box, number, top class and score, and (`top` > 1)
        its runners-up, placed where they cover no other face (ferlab.inference.annotate)."""
        canvas = np.ascontiguousarray(rgb).copy()
        draw(canvas, [face.drawing(number) for number, face in enumerate(self, start=1)], top)
        return canvas

    def to_records(self, file: str | Path | None = None) -> list[Record]:
        """One record per face (1-based `face`), or one with `face` None and the `reason`."""
        name = None if file is None else str(file)
        if not self:
            return [{"file": name, "face": None, "reason": self.reason}]
        return [{"file": name, "face": number, **face.to_dict()} for number, face in enumerate(self, start=1)]

    def to_csv(self, path: str | Path | None = None, file: str | Path | None = None) -> str:
        """The records as CSV text, also written to `path` when given."""
        text = csv_text(self.to_records(file), self.classes)
        if path is not None:
            Path(path).write_text(text, newline="")
        return text

    def to_json(self, path: str | Path | None = None, file: str | Path | None = None) -> str:
        """The records as JSON text, also written to `path` when given."""
        text = json_text(self.to_records(file))
        if path is not None:
            Path(path).write_text(text)
        return text


class Predictor:
    """Detects faces and classifies their expressions with one model or an ensemble (`A+B`).

    The networks are `members` (ferlab.inference.member), one for a single model. An ensemble
    averages its members' calibrated, rebalanced probabilities; each face is cropped once per
    distinct input among them, so each member sees what it would see alone.
    """

    def __init__(
        self,
        model: ModelBundle | str | Path | None = None,
        detector: str | FaceDetector = DEFAULT_DETECTOR,
        backend: BackendName = "auto",
        precision: Precision = "auto",
        threads: int | None = 1,
        uncertain_below: float = UNCERTAIN_BELOW,
        margin: float = DEFAULT_MARGIN,
        align: bool = True,
        tta: TTA | Literal["auto"] | None = None,
        prior: Prior | None = None,
        device: str = DEFAULT_DEVICE,
    ) -> None:
        """`model` is a loaded bundle or a model reference (None: the default model): a shipped
        model's name, a `model.pt`, a run folder, an ONNX export with its record beside it
        (`ferlab export`), that record, or `A+B`, an ensemble of such references (a reference
        that exists as a path is never split). A reference whose ONNX export is there runs on ONNX
        Runtime without importing torch; `bundle` loads the weights when something needs them.

        `align=True` warps each face's landmarks onto the training crops' template; `False`
        crops by the detector's box (ferlab.inference.preprocess). `tta=None` (or `auto`) serves each
        model with the test-time augmentation it was finished with (`train.tta`). `prior="uniform"`
        rebalances the probabilities as if every class were equally common, a number between 0 and 1
        part of the way, `train` not at all; None is the default, half way (ferlab.models.prior).
        `device` `cuda` runs the network on a GPU (ONNX Runtime's CUDA provider, else torch)."""
        named_detector = detector if isinstance(detector, str) else DEFAULT_DETECTOR  # a detector object is its own
        check_options(named_detector, backend, precision, tta, prior, device)
        wanted_tta = chosen_tta(tta)
        models: list[ModelBundle | str | Path] = (
            list(member_references(model)) if model is None or isinstance(model, (str, Path)) else [model]
        )
        self.members = [Member(m, backend, precision, threads, device, wanted_tta, prior) for m in models]
        """The networks averaged, in the order named; one for a single model."""
        first = self.members[0]
        for member in self.members[1:]:
            if member.record.labels != first.record.labels:
                raise FerlabError(
                    f"{first.label} and {member.label} predict different classes ({', '.join(first.record.classes)} "
                    f"vs {', '.join(member.record.classes)}): an ensemble's members must share their class list"
                )
        self.name = ENSEMBLE_SEPARATOR.join(m.label for m in self.members)
        """The model's short name: a shipped name, a run's or file's name, or `A+B` for an ensemble."""
        self.source: Path | None = first.source if len(self.members) == 1 else None
        """The model file this predictor was loaded from (None for a bundle passed in, an export or an ensemble)."""
        self.record: ModelRecord = first.record if len(self.members) == 1 else ensemble_record(self.members)
        """What the model is (ferlab.models.record): its export's, or the one in its weights file; for an
        ensemble, the first member's named `A+B`, without the figures and files of that one network."""
        self.label_set: LabelSet = self.record.labels
        self.prior_strength = max(m.prior_strength for m in self.members)
        """How far the probabilities are rebalanced towards uniform classes (0: a model without a class prior)."""
        self._detector = detector
        self._detector_lock = threading.Lock()  # OpenCV and MediaPipe detectors are not thread-safe
        self.uncertain_below = uncertain_below
        self.margin = margin
        self.align = align

    def _single(self, what: str) -> Member:
        """The one member, for what belongs to a single network."""
        if len(self.members) > 1:
            raise FerlabError(f"{self.name} is an ensemble and has no single {what}; explain or inspect a member")
        return self.members[0]

    @property
    def engine(self) -> LogitEngine:
        """The network behind its backend (a single model only)."""
        return self._single("network").engine

    @property
    def bundle(self) -> ModelBundle:
        """The model's weights as a torch bundle (Grad-CAM, model cards), loaded on first use;
        an ensemble has no single network, so it is an error there."""
        return self._single("network").bundle

    @property
    def temperature(self) -> float:
        """The calibration temperature (a single model only)."""
        return self._single("temperature").record.temperature

    @property
    def class_prior(self) -> np.ndarray | None:
        """The training class prior rebalanced by, None when not rebalanced (a single model only)."""
        return self._single("class prior").class_prior

    @property
    def tta(self) -> TTA:
        """The test-time augmentation served: the first member's (each member's is in `members`)."""
        return self.members[0].tta

    @property
    def inputs(self) -> tuple[Input, ...]:
        """The distinct (size, channels) the members take, the first member's first."""
        return tuple(dict.fromkeys(m.input for m in self.members))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.label_set.classes

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

    def crops(self, rgb: np.ndarray, faces: Sequence[Face], input: Input | None = None) -> np.ndarray:
        """The faces cropped for one input (default: the first member's), uint8 (N, size, size, channels)."""
        size, channels = input or self.inputs[0]
        if not faces:
            return np.zeros((0, size, size, channels), np.uint8)
        return np.stack([crop_face(rgb, f, size, channels, self.margin, self.align) for f in faces])

    def crops_per_input(self, rgb: np.ndarray, faces: Sequence[Face]) -> dict[Input, np.ndarray]:
        """The faces cropped once for each input the members take: what `classify` wants."""
        return {input: self.crops(rgb, faces, input) for input in self.inputs}

    def classify(self, faces: np.ndarray | Mapping[Input, np.ndarray]) -> np.ndarray:
        """Calibrated probabilities (N, K) for uint8 crops: an array at the members' input, or
        crops per input (`crops_per_input`) where an ensemble's members take different ones."""
        if isinstance(faces, np.ndarray):
            given = (faces.shape[1], faces.shape[3]) if faces.ndim == 4 else self.inputs[0]
            faces = {given: faces}
        missing = [f"{size}x{size}x{channels}" for size, channels in self.inputs if (size, channels) not in faces]
        if missing and len(self.inputs) > 1:
            raise FerlabError(f"{self.name} also needs crops at {', '.join(missing)}: classify crops_per_input(...)")
        if missing:  # one input: the engine says what shape it wanted
            faces = {self.inputs[0]: next(iter(faces.values()))}
        return np.mean([m.probabilities(faces[m.input]) for m in self.members], axis=0)

    def _results(self, faces: Sequence[Face | tuple[int, int, int, int]], probabilities: np.ndarray) -> Faces:
        results = Faces(classes=self.classes)
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
        per_image: list[list[Face | tuple[int, int, int, int]]] = []
        crops: list[dict[Input, np.ndarray]] = []
        for image in images:
            rgb = as_rgb(image, bgr=bgr)
            height, width = rgb.shape[:2]
            if detect:
                faces = self.detect(rgb)
                per_image.append(list(faces))
                crops.append(self.crops_per_input(rgb, faces))
            else:
                per_image.append([(0, 0, width, height)])
                crops.append({(s, c): whole_image_face(rgb, s, c)[None] for s, c in self.inputs})
        if crops:
            probabilities = self.classify({i: np.concatenate([c[i] for c in crops]) for i in self.inputs})
        else:
            probabilities = np.zeros((0, len(self.classes)))
        results: list[Faces] = []
        start = 0
        for boxes in per_image:
            found = self._results(boxes, probabilities[start : start + len(boxes)])
            start += len(boxes)
            if not found:
                found.reason = "no face found (classify an image that is already a face crop whole, without detection)"
            results.append(found)
        return results


def ensemble_record(members: Sequence[Member]) -> ModelRecord:
    """What front ends read about an ensemble: the first member's record (its classes and input)
    named `A+B` and described by its members, without what belongs to that one network alone
    (test figures, run, files, Grad-CAM layer)."""
    names = [m.label for m in members]
    return replace(
        members[0].record,
        name=ENSEMBLE_SEPARATOR.join(names),
        description=f"ensemble of {', '.join(names)}: the mean of their calibrated, rebalanced probabilities",
        headline=None,
        run=None,
        gradcam_layer=None,
        source_sha256=None,
        files={},
        checksums={},
    )


def load(name_or_path: str | Path | None = None, **options: Any) -> Predictor:
    """A `Predictor` for a shipped model name, a model.pt, a run folder, an ONNX export with its
    record beside it or that record, or `A+B`, an ensemble of them (default: the shipped default)."""
    return Predictor(name_or_path, **options)
