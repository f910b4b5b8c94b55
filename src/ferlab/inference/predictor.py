"""`Predictor`: the one object behind the CLI, the REST API and the web app.

photo -> faces (detector) -> crops the model was trained on -> calibrated probabilities,
one result per face, classes sorted by score (the report's `predict_single_image`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from ferlab.data.imageio import as_rgb
from ferlab.errors import FerlabError
from ferlab.inference.annotate import FaceLabel, draw, title
from ferlab.inference.choices import DEFAULT_DETECTOR, check_options
from ferlab.inference.detection import Face, FaceDetector, create_detector
from ferlab.inference.engine import (
    TTA,
    BackendName,
    LogitEngine,
    MissingExport,
    OnnxBackend,
    Precision,
    export_folders,
    onnx_cuda_available,
    onnxruntime_available,
    served_tta,
)
from ferlab.inference.preprocess import DEFAULT_MARGIN, crop_face, whole_image_face
from ferlab.inference.results import Record, csv_text, json_text
from ferlab.labels import LabelSet
from ferlab.models.calibration import softmax
from ferlab.models.choices import DEFAULT_DEVICE, chosen_tta
from ferlab.models.prior import Prior, chosen_prior, rebalance
from ferlab.models.record import ModelRecord, find_record
from ferlab.models.shipped import DEFAULT_MODEL, ResolvedModel, model_label, resolve, resolve_model, shipped_models

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
    """Detects faces and classifies their expressions with one model."""

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
        (`ferlab export`), or that record. A reference whose ONNX export is there runs on ONNX
        Runtime without importing torch; `bundle` loads the weights when something needs them.

        `align=True` warps each face's landmarks onto the training crops' template; `False`
        crops by the detector's box (ferlab.inference.preprocess). `tta=None` (or `auto`) serves the
        model with the test-time augmentation it was finished with (`train.tta`). `prior="uniform"`
        rebalances the probabilities as if every class were equally common, a number between 0 and 1
        part of the way, `train` not at all; None is the default, half way (ferlab.models.prior).
        `device` `cuda` runs the network on a GPU (ONNX Runtime's CUDA provider, else torch)."""
        named_detector = detector if isinstance(detector, str) else DEFAULT_DETECTOR  # a detector object is its own
        check_options(named_detector, backend, precision, tta, prior, device)
        wanted_tta = chosen_tta(tta)
        self._bundle: ModelBundle | None = None
        self.source: Path | None = None
        """The model file this predictor was loaded from (None for a bundle passed in or an export)."""
        engine = None
        if model is None or isinstance(model, (str, Path)):
            resolved = resolve(model)
            self.source, name = resolved.weights, resolved.label
            engine = self._export_engine(resolved, backend, precision, threads, device)
        else:
            self._bundle, name = model, "this model"  # for the note on a missing class prior
        if engine is None:
            engine = LogitEngine.for_bundle(self.bundle, backend, precision, threads, self.source, device)
        self.engine = engine
        self.record: ModelRecord = engine.record
        """What the model is (ferlab.models.record): its export's, or the one in its weights file."""
        self.label_set: LabelSet = self.record.labels
        self.temperature = self.record.temperature
        self.prior_strength, self.class_prior = chosen_prior(prior, self.record.class_prior, len(self.label_set), name)
        self._detector = detector
        self._detector_lock = threading.Lock()  # OpenCV and MediaPipe detectors are not thread-safe
        self.uncertain_below = uncertain_below
        self.margin = margin
        self.align = align
        self.tta: TTA = served_tta(self.record.tta) if wanted_tta is None else wanted_tta

    @staticmethod
    def _export_engine(
        resolved: ResolvedModel, backend: BackendName, precision: Precision, threads: int | None, device: str
    ) -> LogitEngine | None:
        """The model's ONNX export on ONNX Runtime, found from its record without torch: the file
        named, the exports beside the record named, a shipped model's, or the cached export of a
        model file; None where the weights must serve it."""
        usable = backend != "torch" and onnxruntime_available() and (device == "cpu" or onnx_cuda_available())
        if resolved.weights is None and not usable:
            raise FerlabError(
                f"{resolved.path}: an ONNX export runs on ONNX Runtime only (pip install onnxruntime; "
                "backend auto or onnx, and onnxruntime-gpu for a GPU)"
            )
        if not usable:
            return None
        record, export = resolved.record, resolved.export
        if export is not None and record is not None:
            return LogitEngine(OnnxBackend(export, threads, device, record), record)
        if record is None and resolved.weights is not None and resolved.weights.is_file():
            found = find_record(resolved.weights, export_folders())
            record = None if found is None else found[0]
        if record is None:
            return None
        try:
            return LogitEngine.for_export(record, precision, threads, device, resolved.exports)
        except MissingExport:
            if resolved.weights is None:
                raise
            return None  # the record is there, its export is not (yet): made from the weights

    @property
    def bundle(self) -> ModelBundle:
        """The model's weights as a torch bundle (Grad-CAM, model cards), loaded on first use."""
        if self._bundle is None:
            from ferlab.models.bundle import load_bundle

            if self.source is None:
                raise FerlabError(
                    "this model is an ONNX export without its weights: Grad-CAM and model cards need its model.pt"
                )
            self._bundle = load_bundle(self.source)
        return self._bundle

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

    def crops(self, rgb: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        size, channels = self.record.input_size, self.record.in_channels
        if not faces:
            return np.zeros((0, size, size, channels), np.uint8)
        return np.stack([crop_face(rgb, f, size, channels, self.margin, self.align) for f in faces])

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, K) for uint8 crops at the model's input size."""
        probabilities = softmax(self.engine.logits(faces, self.tta), self.temperature)
        if self.class_prior is None:
            return probabilities
        return rebalance(probabilities, self.class_prior, self.prior_strength)

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
        record = self.record
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
                crops.append(whole_image_face(rgb, record.input_size, record.in_channels)[None])
        probabilities = self.classify(np.concatenate(crops)) if crops else np.zeros((0, len(self.classes)))
        results: list[Faces] = []
        start = 0
        for boxes in per_image:
            found = self._results(boxes, probabilities[start : start + len(boxes)])
            start += len(boxes)
            if not found:
                found.reason = "no face found (classify an image that is already a face crop whole, without detection)"
            results.append(found)
        return results


def load(name_or_path: str | Path | None = None, **options: Any) -> Predictor:
    """A `Predictor` for a shipped model name, a model.pt, a run folder, an ONNX export with its
    record beside it or that record (default: the shipped default)."""
    return Predictor(name_or_path, **options)
