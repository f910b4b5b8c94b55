"""Face detectors that work offline, behind one small interface.

`haar` (OpenCV's bundled frontal-face cascade) always works; `mediapipe` (BlazeFace,
bundled in mediapipe==0.10.21) is used when importable: it is faster and finds more single
faces (benchmarks/detection_rate.py), but needs numpy<2, so ferlab does not install it. Detection runs
on a copy downscaled to at most `DETECT_SIDE` pixels, so a 12-megapixel photo costs what a
640-pixel one does; boxes are mapped back to the original image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from ferlab.errors import FerlabError

DETECT_SIDE = 640


@dataclass(frozen=True)
class Face:
    """A detected face: box (x, y, width, height) in image pixels, score in [0, 1], eyes if known."""

    box: tuple[int, int, int, int]
    score: float
    left_eye: tuple[float, float] | None = None
    right_eye: tuple[float, float] | None = None


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, largest first."""
        ...


def _downscaled(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    scale = min(1.0, DETECT_SIDE / max(rgb.shape[:2]))
    if scale == 1.0:
        return rgb, 1.0
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade, shipped with opencv-python-headless<5."""

    name = "haar"

    def __init__(self, min_neighbors: int = 5, scale_factor: float = 1.1) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise FerlabError(f"OpenCV's face cascade is missing ({path}); install opencv-python-headless<5")
        self.min_neighbors = min_neighbors
        self.scale_factor = scale_factor

    def detect(self, rgb: np.ndarray) -> list[Face]:
        small, scale = _downscaled(rgb)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_side = max(20, min(gray.shape) // 12)
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side), outputRejectLevels=True,
        )
        faces = []
        for (x, y, w, h), weight in zip(boxes, np.ravel(weights) if len(boxes) else []):
            score = float(1 / (1 + np.exp(-(float(weight) - 2.0))))  # cascade margin -> (0, 1)
            faces.append(Face(tuple(int(round(v / scale)) for v in (x, y, w, h)), score))  # type: ignore[arg-type]
        return _largest_first(faces)


class MediaPipeDetector:
    """BlazeFace from mediapipe==0.10.21 (bundled model, no download), with eye landmarks."""

    name = "mediapipe"

    def __init__(self, min_score: float = 0.5, full_range: bool = False) -> None:
        try:
            import mediapipe as mp
        except ImportError:
            raise FerlabError(
                "the mediapipe detector needs mediapipe==0.10.21 (it requires numpy<2, so it lives in "
                "its own environment; see the README); use --detector haar"
            ) from None
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1 if full_range else 0, min_detection_confidence=min_score
        )

    def detect(self, rgb: np.ndarray) -> list[Face]:
        small, scale = _downscaled(np.ascontiguousarray(rgb))
        height, width = small.shape[:2]
        result = self._detector.process(small)
        faces = []
        for detection in result.detections or []:
            rel = detection.location_data.relative_bounding_box
            x, y = max(0.0, rel.xmin * width), max(0.0, rel.ymin * height)
            w, h = min(width - x, rel.width * width), min(height - y, rel.height * height)
            if w < 4 or h < 4:
                continue
            keypoints = detection.location_data.relative_keypoints
            # BlazeFace keypoint 0 is the subject's right eye (image left), 1 the left eye.
            right = (keypoints[0].x * width / scale, keypoints[0].y * height / scale)
            left = (keypoints[1].x * width / scale, keypoints[1].y * height / scale)
            box = tuple(int(round(v / scale)) for v in (x, y, w, h))
            faces.append(Face(box, float(detection.score[0]), left_eye=left, right_eye=right))  # type: ignore[arg-type]
        return _largest_first(faces)


DETECTORS = {"haar": HaarDetector, "mediapipe": MediaPipeDetector}


def create_detector(name: str = "auto") -> FaceDetector:
    """A detector by name; `auto` is the best one installed (mediapipe, else haar)."""
    if name == "auto":
        try:
            return MediaPipeDetector()
        except FerlabError:
            return HaarDetector()
    try:
        return DETECTORS[name]()  # type: ignore[return-value]
    except KeyError:
        raise FerlabError(f"unknown face detector {name!r}; use auto, {', '.join(DETECTORS)}") from None
