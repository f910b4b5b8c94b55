"""Where the model looked: Grad-CAM on the faces a `Predictor` found, for every front end.

`ferlab explain` and the web app's overlay both come from here: the heatmap is computed
on exactly the crop the predictor classified (the same detection, margin and landmark
alignment, from `FacePrediction.detected`) and drawn on that crop, in colour; `ferlab explain`
shows every face so, labelled with its number, class and score (`explanation_panel`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ferlab.data.imageio import as_rgb
from ferlab.errors import FerlabError
from ferlab.evaluation.gradcam import gradcam, overlay
from ferlab.inference.annotate import FaceLabel, draw, title
from ferlab.inference.predictor import UNCERTAIN_BELOW, FacePrediction, ImageInput, Predictor
from ferlab.inference.preprocess import crop_face, whole_image_face

MIN_TILE = 160
"""Smallest side of a face in `explanation_panel`: room for its label, even for a 48-pixel crop."""
MAX_TILE = 320


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

    @property
    def score(self) -> float:
        """The calibrated probability of the class explained."""
        return self.face.probabilities[self.label]


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
        record = self.bundle.record
        if face.detected is None:  # detect=False: the whole image was the face
            crop = whole_image_face(rgb, record.input_size, record.in_channels)
            picture = whole_image_face(rgb, size, 3) if size else rgb
        else:
            margin, align = self.predictor.margin, self.predictor.align
            crop = crop_face(rgb, face.detected, record.input_size, record.in_channels, margin, align)
            size = size or max(record.input_size, face.box[2])
            picture = crop_face(rgb, face.detected, size, 3, margin, align)
        label_set = self.bundle.record.labels
        class_index = label_set.index(class_name) if class_name else label_set.classes.index(face.label)
        with self._lock:
            heatmap, explained = gradcam(self.bundle, crop, class_index)
        return Explanation(overlay(picture, heatmap), label_set.classes[explained], face, crop)

    def overlay(self, rgb: np.ndarray, face: FacePrediction) -> np.ndarray:
        """The face crop with a heatmap of where the model looked for its top class."""
        return self.explain(rgb, face).image


def explain_faces(
    predictor: Predictor, image: ImageInput, class_name: str | None = None, detect: bool = True
) -> list[Explanation]:
    """Grad-CAM on every face of an image, largest first (the whole image when `detect` is off),
    each drawn at one size: the largest face's width, between `MIN_TILE` and `MAX_TILE` pixels.

    A photo without a face is an error, as `ferlab predict` reports it: explaining the background
    as if it were a face would show a heatmap that means nothing."""
    rgb = as_rgb(image)
    faces = predictor.predict(rgb, detect=detect)
    if not faces:
        raise FerlabError("no face found, so nothing to explain (--no-detect / detect=False: the image is a face crop)")
    widths = [face.box[2] for face in faces]
    size = max(MIN_TILE, predictor.record.input_size, min(max(widths), MAX_TILE))
    explainer = Explainer(predictor)
    return [explainer.explain(rgb, face, class_name, size) for face in faces]


def explanation_panel(explanations: Sequence[Explanation], gap: int = 8, header: int = 30) -> np.ndarray:
    """The faces' overlays side by side, each framed and labelled by the one renderer with its
    number, the class explained and that class's probability (ferlab.inference.annotate)."""
    size = max(e.image.shape[0] for e in explanations)
    width = len(explanations) * (size + gap) + gap
    panel = np.full((header + size + gap, width, 3), 255, np.uint8)
    labels = []
    for number, explanation in enumerate(explanations, start=1):
        x = gap + (number - 1) * (size + gap)
        tile = explanation.image
        panel[header : header + tile.shape[0], x : x + tile.shape[1]] = tile
        score = explanation.score
        box = (x, header, tile.shape[1], tile.shape[0])
        labels.append(FaceLabel(box, title(number, explanation.label, score), uncertain=score < UNCERTAIN_BELOW))
    draw(panel, labels)
    return panel
