"""From a photo and a detected face to exactly the crop the model was trained on.

FER2013 and FER+ faces are tight, upright 48x48 gray crops with a particular framing:
eyes at about a third of the height, the mouth near the bottom edge. A detector's box
frames a face differently (YuNet's box is taller and narrower, Haar's square one larger),
so cropping "the box plus a margin" shows the model faces at another scale and centring
than it learned.

Instead, each face is warped with a similarity transform (rotation, uniform scale,
translation; least squares, Umeyama 1991) that takes its five YuNet landmarks to where
YuNet puts them on FER+ training faces (`TEMPLATE_48`, scaled to the model's input size).
The crop then has the scale, centring and roll the model learned. Without landmarks
(Haar), the detector's box is mapped onto its mean box in the training crops
(`BOX_TEMPLATES_48`); for a detector with no measured box, the box plus `margin` is used.

Both templates were measured by `python benchmarks/face_template.py --data .data/ferplus
--limit 5000` (docs/detection.md): 5,000 FER+ training faces, upscaled 4x onto a gray border.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ferlab.data.imageio import resize
from ferlab.inference.detection import Face

DEFAULT_MARGIN = 0.1
"""Box growth on each side, as a fraction of the box, for detectors without a measured box template."""

TEMPLATE_48 = ((15.06, 18.01), (32.43, 17.90), (23.43, 27.96), (16.80, 36.08), (31.19, 35.90))
"""Mean YuNet landmarks on FER+ training faces, in the 48x48 crop: right eye, left eye, nose tip,
right and left mouth corner (subject's sides). Measured by `python benchmarks/face_template.py --data
.data/ferplus --limit 5000` (YuNet found 4,943 of the 5,000 faces; spread about 3.5 px per point)."""

BOX_TEMPLATES_48 = {"yunet": (24.08, 24.11, 38.94, 50.02), "haar": (24.03, 23.55, 45.42, 45.42)}
"""Mean detector box on FER+ training faces in the 48x48 crop: centre x, centre y, width, height.
Measured by `python benchmarks/face_template.py`."""


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) that best maps source points
    onto target points in the least-squares sense, without reflection.

    In 2-D, Umeyama's (1991) solution has a closed form: with the centred points as complex
    numbers, scale * e^(i angle) = sum(conj(src) * dst) / sum(|src|^2).
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    src = source[:, 0] + 1j * source[:, 1]
    dst = target[:, 0] + 1j * target[:, 1]
    src_mean, dst_mean = src.mean(), dst.mean()
    src, dst = src - src_mean, dst - dst_mean
    variance = float((src.real**2 + src.imag**2).sum())
    if variance < 1e-12:
        raise ValueError("source points coincide")
    z = (np.conj(src) * dst).sum() / variance  # scale * (cos + i sin)
    shift = dst_mean - z * src_mean
    return np.array([[z.real, -z.imag, shift.real], [z.imag, z.real, shift.imag]])


def _box_transform(face: Face, size: int, margin: float) -> np.ndarray:
    """Image -> crop for the box alone: the detector's mean box in the training crops, or box + margin."""
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    template = BOX_TEMPLATES_48.get(face.detector)
    if template is not None:
        tcx, tcy, tw, th = (v * size / 48 for v in template)
        scale = math.sqrt(tw * th / max(w * h, 1e-9))
    else:
        tcx = tcy = size / 2
        scale = size / (max(w, h) * (1 + 2 * margin))
    return np.array([[scale, 0, tcx - scale * cx], [0, scale, tcy - scale * cy]])


def face_transform(face: Face, size: int, margin: float = DEFAULT_MARGIN, align: bool = True) -> np.ndarray:
    """The 2x3 affine matrix from image pixels to the size x size crop of this face.

    With `align` and five landmarks, the landmark similarity; with only two eyes
    (MediaPipe), the similarity of the eyes onto the template's eyes; otherwise the box.
    A landmark fit whose scale is more than twice off the box's is discarded as broken.
    """
    box = _box_transform(face, size, margin)
    if not align:
        return box
    template = np.array(TEMPLATE_48) * size / 48
    if face.landmarks is not None and len(face.landmarks) == 5:
        source, target = np.array(face.landmarks), template
    elif face.left_eye is not None and face.right_eye is not None:
        source, target = np.array([face.right_eye, face.left_eye]), template[:2]
    else:
        return box
    try:
        matrix = similarity_transform(source, target)
    except ValueError:
        return box
    ratio = math.hypot(matrix[0, 0], matrix[1, 0]) / box[0, 0]
    return matrix if 0.5 <= ratio <= 2 else box


def warp(rgb: np.ndarray, matrix: np.ndarray, size: int, channels: int = 3) -> np.ndarray:
    """The size x size crop `matrix` maps out of the image, with `channels` channels (1: gray
    with Pillow's weights, as the training data); borders replicate the edge pixels.

    Only the region the crop reads is touched. A crop much smaller than the face is
    area-averaged first, so a 400-pixel face is not aliased down to 48 pixels by bilinear
    sampling.
    """
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    height, width = rgb.shape[:2]
    x0, y0 = (min(max(0, math.floor(v) - 2), limit - 1) for v, limit in zip(corners.min(0), (width, height)))
    x1 = max(x0 + 1, min(width, math.ceil(corners[:, 0].max()) + 2))
    y1 = max(y0 + 1, min(height, math.ceil(corners[:, 1].max()) + 2))
    roi = to_channels(np.ascontiguousarray(rgb[y0:y1, x0:x1]), channels)
    adjusted = matrix.copy()
    adjusted[:, 2] = matrix[:, :2] @ np.array([x0, y0]) + matrix[:, 2]  # ROI pixels -> crop
    scale = math.sqrt(abs(matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0]))
    if scale < 0.8 and roi.shape[0] >= 2 and roi.shape[1] >= 2:
        new_size = (max(1, round(roi.shape[1] * scale)), max(1, round(roi.shape[0] * scale)))
        fx, fy = new_size[0] / roi.shape[1], new_size[1] / roi.shape[0]
        roi = cv2.resize(roi, new_size, interpolation=cv2.INTER_AREA)
        adjusted[:, 0] /= fx
        adjusted[:, 1] /= fy
    crop = cv2.warpAffine(roi, adjusted, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop.reshape(size, size, channels)


def crop_face(
    rgb: np.ndarray, face: Face, size: int, channels: int, margin: float = DEFAULT_MARGIN, align: bool = True
) -> np.ndarray:
    """The face as a uint8 (size, size, channels) array framed like the training crops.

    `align=True` warps the landmarks (or eyes) onto the training template; `align=False`
    uses the box alone (see the module docstring).
    """
    return warp(rgb, face_transform(face, size, margin, align), size, channels)


def to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """RGB (H, W, 3) -> (H, W, 1) gray with Pillow's weights (as training data), or unchanged."""
    if channels == 3:
        return rgb
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return gray[:, :, None]


def whole_image_face(rgb: np.ndarray, size: int, channels: int) -> np.ndarray:
    """A pre-cropped face: the whole image, squashed to the model's input."""
    return resize(to_channels(rgb, channels), size)
