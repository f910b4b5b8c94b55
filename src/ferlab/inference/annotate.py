"""The one renderer of results on images: annotated photos, video frames and the web app.

Each face gets its box and one label: face number, top class and score, optionally followed
by a compact list of the runners-up. A label goes where it covers no other face and no other
label and stays inside the image (above the face, below it, beside it, at a smaller size,
without the runners-up, and only then on its own face), so a crowded photo stays readable.
`draw` returns the rectangles it placed, which is how the placement is tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

COLOR = (40, 200, 60)
UNCERTAIN_COLOR = (230, 160, 30)
LANDMARK_COLOR = (255, 230, 0)
ROW_BACKGROUND = (30, 30, 30)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_SCALE = 0.3
"""The smallest text a label shrinks to (about 7 pixels high) before it gives up its runners-up."""


@dataclass(frozen=True)
class Rect:
    """A rectangle in pixels, `x1` and `y1` exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def of_box(cls, box: tuple[int, int, int, int]) -> Rect:
        x, y, w, h = box
        return cls(x, y, x + w, y + h)

    def overlaps(self, other: Rect) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def inside(self, width: int, height: int) -> bool:
        return self.x0 >= 0 and self.y0 >= 0 and self.x1 <= width and self.y1 <= height

    def moved_into(self, width: int, height: int) -> Rect:
        """The same size, shifted as little as needed to lie inside a width x height image."""
        dx = max(0, -self.x0) - max(0, self.x1 - width)
        dy = max(0, -self.y0) - max(0, self.y1 - height)
        x0, y0 = max(0, self.x0 + dx), max(0, self.y0 + dy)
        return Rect(x0, y0, min(width, x0 + self.x1 - self.x0), min(height, y0 + self.y1 - self.y0))


@dataclass(frozen=True)
class FaceLabel:
    """What to draw for one face: its box, its title and, highest first, its classes' scores."""

    box: tuple[int, int, int, int]
    title: str
    """Face number (or track id), top class and score, e.g. `2 happy 0.91`."""
    ranked: Sequence[tuple[str, float]] = ()
    """Every class with its probability, highest first; `top` > 1 shows the runners-up from it."""
    uncertain: bool = False
    landmarks: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class Placed:
    """Where a face's box and label were drawn."""

    face: Rect
    label: Rect


def title(number: int | str, label: str, confidence: float) -> str:
    """The label's first line: `3 happy 0.91`."""
    return f"{number} {label} {confidence:.2f}"


def draw(rgb: np.ndarray, faces: Sequence[FaceLabel], top: int = 1) -> list[Placed]:
    """Draw every face's box and label onto `rgb` in place; `top` > 1 adds that many classes in all
    (the title's and the runners-up). Returns each face's box and label rectangle, in order."""
    height, width = rgb.shape[:2]
    boxes = [Rect.of_box(face.box) for face in faces]
    thickness = max(1, round(max(height, width) / 500))
    typical = float(np.median([b.x1 - b.x0 for b in boxes])) if boxes else 0.0
    scale = float(np.clip(min(max(height, width) / 1400, typical / 190), MIN_SCALE + 0.1, 1.2))
    for face, box in zip(faces, boxes):
        for px, py in face.landmarks or ():
            radius = max(1, min(box.x1 - box.x0, box.y1 - box.y0) // 40)
            cv2.circle(rgb, (round(px), round(py)), radius, LANDMARK_COLOR, -1, cv2.LINE_AA)
        cv2.rectangle(rgb, (box.x0, box.y0), (box.x1 - 1, box.y1 - 1), _color(face), thickness)
    placed: list[Placed] = []
    taken: list[Rect] = []
    for i, (face, box) in enumerate(zip(faces, boxes)):
        others = [b for j, b in enumerate(boxes) if j != i] + taken
        rows, rect, row_scale = _place(face, box, others, scale, top, width, height)
        _draw_label(rgb, face, rows, rect, row_scale)
        taken.append(rect)
        placed.append(Placed(box, rect))
    return placed


def _color(face: FaceLabel) -> tuple[int, int, int]:
    return UNCERTAIN_COLOR if face.uncertain else COLOR


def _rows(face: FaceLabel, top: int) -> list[str]:
    return [face.title] + [f"{name} {p:.2f}" for name, p in list(face.ranked)[1:top]]


def _size(rows: list[str], scale: float) -> tuple[int, int, int]:
    """Width and height of a label block, and the height of one of its rows."""
    weight = 1 if scale < 0.8 else 2
    sizes = [cv2.getTextSize(row, FONT, scale, weight) for row in rows]
    row_height = max(th + baseline for (_, th), baseline in sizes) + 4
    return max(tw for (tw, _), _ in sizes) + 6, row_height * len(rows), row_height


def _place(
    face: FaceLabel, box: Rect, others: list[Rect], scale: float, top: int, width: int, height: int
) -> tuple[list[str], Rect, float]:
    """The first label, from the most to the least readable, whose place covers nothing it must not:
    with its runners-up off the face, then the title alone off the face, smaller, then on the face."""
    full, alone = _rows(face, top), _rows(face, 1)
    smaller = [max(MIN_SCALE, scale * f) for f in (1, 0.8, 0.65)] + [MIN_SCALE]
    attempts = [(rows, s, False) for rows in (full, alone) for s in smaller[:2]]
    attempts += [(alone, s, False) for s in smaller[2:]] + [(alone, s, True) for s in smaller]
    for rows, s, on_face in attempts:
        w, h, _ = _size(rows, s)
        for x, y in (
            (box.x0, box.y0 - h),  # above, then below, left- then right-aligned
            (box.x0, box.y1),
            (box.x1 - w, box.y0 - h),
            (box.x1 - w, box.y1),
            (box.x1, box.y0),  # beside
            (box.x0 - w, box.y0),
            (box.x0, box.y0),  # on the face itself
        ):
            rect = Rect(x, y, x + w, y + h).moved_into(width, height)
            if rect.x1 - rect.x0 < w or rect.y1 - rect.y0 < h:
                break  # larger than the image
            if not any(rect.overlaps(o) for o in others) and (on_face or not rect.overlaps(box)):
                return rows, rect, s
    w, h, _ = _size(alone, MIN_SCALE)  # nowhere free: the title on its own face, inside the image
    return alone, Rect(box.x0, box.y0, box.x0 + w, box.y0 + h).moved_into(width, height), MIN_SCALE


def _draw_label(rgb: np.ndarray, face: FaceLabel, rows: list[str], rect: Rect, scale: float) -> None:
    color = _color(face)
    weight = 1 if scale < 0.8 else 2
    _, _, row_height = _size(rows, scale)
    for n, text in enumerate(rows):
        y0 = rect.y0 + n * row_height
        y1 = min(rect.y1, y0 + row_height) - 1
        if n == 0:
            cv2.rectangle(rgb, (rect.x0, y0), (rect.x1 - 1, y1), color, -1)
            ink: tuple[int, int, int] = (0, 0, 0)
        else:  # a runner-up: a bar as long as its probability under white text
            cv2.rectangle(rgb, (rect.x0, y0), (rect.x1 - 1, y1), ROW_BACKGROUND, -1)
            probability = list(face.ranked)[n][1]
            bar = round((rect.x1 - rect.x0) * probability)
            if bar > 0:
                dim = tuple(c // 2 for c in color)
                cv2.rectangle(rgb, (rect.x0, y0), (rect.x0 + bar - 1, y1), dim, -1)
            ink = (255, 255, 255)
        (_, text_height), _ = cv2.getTextSize(text, FONT, scale, weight)
        cv2.putText(rgb, text, (rect.x0 + 3, y0 + 2 + text_height), FONT, scale, ink, weight, cv2.LINE_AA)
