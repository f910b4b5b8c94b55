"""Following faces across video frames and smoothing their probabilities so labels do not flicker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for annotations: importing SMOOTHING (the CLI's --smoothing default) stays light
    from ferlab.inference.predictor import FacePrediction

SMOOTHING = 0.6
"""Default weight of a track's past probabilities against the new frame's (0: no smoothing)."""


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    width = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = width * height
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    face_id: int
    box: tuple[int, int, int, int]
    probabilities: np.ndarray
    """Exponentially smoothed class probabilities."""
    missed: int = 0


class FaceTracker:
    """Greedy IoU matching of detections to tracks, with exponential smoothing per track.

    `smoothing` is the weight of the past (0 = no smoothing); a track is dropped after
    `max_missed` processed frames without a matching face.
    """

    def __init__(
        self, classes: tuple[str, ...], smoothing: float = SMOOTHING, min_iou: float = 0.3, max_missed: int = 5
    ) -> None:
        if not 0 <= smoothing < 1:
            raise ValueError("smoothing must be in [0, 1)")
        self.classes = classes
        self.smoothing = smoothing
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, faces: list[FacePrediction]) -> list[Track]:
        """Feed one frame's faces; returns the tracks seen in this frame."""
        current = [np.array([face.probabilities[c] for c in self.classes]) for face in faces]
        pairs = sorted(
            ((iou(track.box, face.box), t, f) for t, track in enumerate(self.tracks) for f, face in enumerate(faces)),
            reverse=True,
        )
        matched_tracks: set[int] = set()
        matched_faces: dict[int, Track] = {}
        for overlap, t, f in pairs:
            if overlap < self.min_iou or t in matched_tracks or f in matched_faces:
                continue
            track = self.tracks[t]
            track.box = faces[f].box
            track.probabilities = self.smoothing * track.probabilities + (1 - self.smoothing) * current[f]
            track.missed = 0
            matched_tracks.add(t)
            matched_faces[f] = track
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.missed += 1
        for f, face in enumerate(faces):
            if f not in matched_faces:
                track = Track(self._next_id, face.box, current[f])
                self._next_id += 1
                self.tracks.append(track)
                matched_faces[f] = track
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return [matched_faces[f] for f in range(len(faces))]

    def label(self, track: Track) -> tuple[str, float]:
        index = int(np.argmax(track.probabilities))
        return self.classes[index], float(track.probabilities[index])
