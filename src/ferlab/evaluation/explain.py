"""Where the model looked: Grad-CAM on the faces a `Predictor` found, for every front end.

`ferlab explain` and the web app's overlay both come from here: the heatmap is computed
on exactly the crop the predictor classified (the same detection, margin and landmark
alignment, from `FacePrediction.detected`) and drawn on that crop, in colour.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, replace

import numpy as np

from ferlab.data.imageio import as_rgb
from ferlab.evaluation.gradcam import gradcam, overlay
from ferlab.inference.predictor import FacePrediction, ImageInput, Predictor
from ferlab.inference.preprocess import crop_face, whole_image_face

NO_FACE = "no face found: explaining the whole image as a face crop"


@dataclass
class Explanation:
    image: np.ndarray
    """The face in colour (RGB uint8) with the heatmap over it."""
    label: str
    """The class explained."""
    face: FacePrediction
    """The prediction whose crop was explained."""
    crop: np.ndarray
    """The crop Grad-CAM ran on: the model's input, as the predictor made it for this face."""
    note: str | None = None
    """Set when the explanation is not of a detected face (no face was found)."""


class Explainer:
    """Grad-CAM for the faces a `Predictor` found, on a private copy of its network.

    Grad-CAM hooks the network and runs backward passes; doing that on the copy the
    predictor serves from would disturb concurrent predictions, so it gets its own copy
    and one lock.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.bundle = replace(predictor.bundle, model=copy.deepcopy(predictor.bundle.model))
        self._lock = threading.Lock()

    def explain(
        self, rgb: np.ndarray, face: FacePrediction, class_name: str | None = None, size: int | None = None
    ) -> Explanation:
        """Grad-CAM of `face` in the RGB image it was predicted on, for `class_name` (default:
        the predicted class), drawn on the face crop at `size` pixels (default: the face's own
        width in the image, at least the model's input size). A face predicted with
        detect=False is the whole image, drawn as it is unless `size` is given."""
        spec = self.bundle.spec
        if face.detected is None:  # detect=False: the whole image was the face
            crop = whole_image_face(rgb, spec.input_size, spec.in_channels)
            picture = whole_image_face(rgb, size, 3) if size else rgb
        else:
            margin, align = self.predictor.margin, self.predictor.align
            crop = crop_face(rgb, face.detected, spec.input_size, spec.in_channels, margin, align)
            size = size or max(spec.input_size, face.box[2])
            picture = crop_face(rgb, face.detected, size, 3, margin, align)
        label_set = self.bundle.label_set
        class_index = label_set.index(class_name) if class_name else label_set.classes.index(face.label)
        with self._lock:
            heatmap, explained = gradcam(self.bundle, crop, class_index)
        return Explanation(overlay(picture, heatmap), label_set.classes[explained], face, crop)

    def overlay(self, rgb: np.ndarray, face: FacePrediction) -> np.ndarray:
        """The face crop with a heatmap of where the model looked for its top class."""
        return self.explain(rgb, face).image


def explain_image(
    predictor: Predictor, image: ImageInput, class_name: str | None = None, detect: bool = True
) -> Explanation:
    """Grad-CAM on the largest face of an image (the whole image when `detect` is off or no
    face is found; the explanation's `note` says so in the second case), drawn on the face at
    its own resolution (at least the model's input size)."""
    rgb = as_rgb(image)
    faces = predictor.predict(rgb, detect=detect)
    note = None
    if not faces:
        faces, note = predictor.predict(rgb, detect=False), NO_FACE
    explanation = Explainer(predictor).explain(rgb, faces[0], class_name)
    explanation.note = note
    return explanation
