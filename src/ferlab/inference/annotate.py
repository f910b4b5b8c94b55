"""Drawing results onto images: boxes, labels with confidence, and probability bars."""

from __future__ import annotations

import cv2
import numpy as np

COLOR = (40, 200, 60)
UNCERTAIN_COLOR = (230, 160, 30)
LANDMARK_COLOR = (255, 230, 0)


def draw_face(
    rgb: np.ndarray,
    box: tuple[int, int, int, int],
    title: str,
    probabilities: dict[str, float] | None = None,
    uncertain: bool = False,
    landmarks: tuple[tuple[float, float], ...] | None = None,
) -> None:
    """Draw in place: box, title above it, the landmarks if given, and (optionally) a bar per class beside it."""
    x, y, w, h = box
    color = UNCERTAIN_COLOR if uncertain else COLOR
    thickness = max(1, round(max(rgb.shape[:2]) / 400))
    for px, py in landmarks or ():
        cv2.circle(rgb, (round(px), round(py)), max(1, min(w, h) // 40), LANDMARK_COLOR, -1, cv2.LINE_AA)
    scale = max(0.4, max(rgb.shape[:2]) / 1400)
    cv2.rectangle(rgb, (x, y), (x + w, y + h), color, thickness)
    (tw, th), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = max(th + 4, y)
    cv2.rectangle(rgb, (x, top - th - 4), (x + tw + 4, top), color, -1)
    cv2.putText(rgb, title, (x + 2, top - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    if not probabilities:
        return
    bar_x = x + w + 6
    line = th + 6
    width = max(40, w // 2)
    for i, (name, p) in enumerate(probabilities.items()):
        row = y + i * line
        if row + line > rgb.shape[0] or bar_x + width > rgb.shape[1]:
            break
        cv2.rectangle(rgb, (bar_x, row), (bar_x + int(width * p), row + line - 2), color, -1)
        cv2.putText(
            rgb,
            f"{name} {p:.2f}",
            (bar_x + 2, row + line - 5),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale * 0.8,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
