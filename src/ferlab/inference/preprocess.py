"""From a photo and a face box to exactly the crop the model was trained on.

FER2013 and FER+ faces are tight, upright, 48x48 gray crops; a webcam frame is none of
that. Cropping with a margin, levelling the eyes when landmarks exist and converting to
the model's size and channels closes most of that gap.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ferlab.data.imageio import resize
from ferlab.inference.detection import Face

DEFAULT_MARGIN = 0.1
"""Box growth on each side, as a fraction of the box: FER2013 crops include forehead and chin."""


def crop_face(rgb: np.ndarray, face: Face, size: int, channels: int, margin: float = DEFAULT_MARGIN,
              align: bool = True) -> np.ndarray:
    """The face as a uint8 (size, size, channels) array, eye-levelled when eyes are known."""
    x, y, w, h = face.box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    angle = 0.0
    if align and face.left_eye is not None and face.right_eye is not None:
        (lx, ly), (rx, ry) = face.left_eye, face.right_eye
        angle = math.degrees(math.atan2(ly - ry, lx - rx))
    # One affine warp does rotation, crop and scaling; borders replicate the edge pixels.
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, size / side)
    matrix[0, 2] += size / 2 - cx
    matrix[1, 2] += size / 2 - cy
    crop = cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return to_channels(crop, channels)


def to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """RGB (H, W, 3) -> (H, W, 1) gray with Pillow's weights (as training data), or unchanged."""
    if channels == 3:
        return rgb
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return gray[:, :, None]


def whole_image_face(rgb: np.ndarray, size: int, channels: int) -> np.ndarray:
    """A pre-cropped face: the whole image, squashed to the model's input."""
    return resize(to_channels(rgb, channels), size)
