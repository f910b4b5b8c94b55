"""Prediction results as objects: the one renderer's label placement, and the records' tables."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from ferlab.inference.annotate import COLOR, FaceLabel, Rect, draw
from ferlab.inference.predictor import FacePrediction, Faces

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def face(box: tuple[int, int, int, int], seed: int) -> FacePrediction:
    scores = np.random.default_rng(seed).dirichlet(np.ones(len(CLASSES)))
    ranked = {CLASSES[i]: float(scores[i]) for i in np.argsort(-scores)}
    return FacePrediction(box, 0.9, ranked, uncertain=max(ranked.values()) < 0.5)


def check_labels(faces: Faces, width: int, height: int, top: int) -> list[Rect]:
    canvas = np.zeros((height, width, 3), np.uint8)
    placed = draw(canvas, [f.drawing(n) for n, f in enumerate(faces, start=1)], top)
    boxes = [p.face for p in placed]
    for i, p in enumerate(placed):
        assert p.label.inside(width, height), (i, p.label)
        assert not any(p.label.overlaps(b) for j, b in enumerate(boxes) if j != i), (i, p.label)
        assert not any(p.label.overlaps(q.label) for j, q in enumerate(placed) if j != i), (i, p.label)
    return [p.label for p in placed]


@pytest.mark.parametrize("top", [1, 3])
def test_five_faces_close_together_get_labels_that_cover_no_other_face_and_stay_inside(top: int) -> None:
    """A row of five faces a few pixels apart, the outer ones touching the image's edges, and a
    second row right under them: every label finds room and none covers a face or leaves the image."""
    boxes = [(0, 4, 96, 96), (100, 2, 96, 100), (200, 6, 92, 92), (296, 0, 100, 104), (400, 3, 96, 97)]
    faces = Faces(face(box, seed) for seed, box in enumerate(boxes))
    labels = check_labels(faces, 496, 190, top)
    assert all(label.y0 >= 100 for label in labels[:1])  # no room above the top row: the label went below
    crowded = Faces(face(box, seed) for seed, box in enumerate([*boxes, (60, 140, 60, 50), (260, 140, 60, 50)]))
    check_labels(crowded, 496, 190, top)


def test_labels_are_readable_and_the_runners_up_are_listed() -> None:
    canvas = np.zeros((400, 600, 3), np.uint8)
    one = face((250, 150, 100, 100), 3)
    [placed] = draw(canvas, [one.drawing(1)], top=3)
    [narrow] = draw(np.zeros((400, 600, 3), np.uint8), [one.drawing(1)], top=1)
    assert placed.label.y1 - placed.label.y0 > 2 * (narrow.label.y1 - narrow.label.y0)  # title plus two rows
    assert not placed.label.overlaps(placed.face)  # there was room outside the face
    title_row = canvas[placed.label.y0 + 1, placed.label.x0 : placed.label.x1]
    assert (np.abs(title_row.astype(int) - (COLOR if not one.uncertain else title_row[0])).max(axis=1) < 5).mean() > 0.5


def test_a_label_with_no_room_anywhere_stays_inside_the_image() -> None:
    canvas = np.zeros((40, 40, 3), np.uint8)
    [placed] = draw(canvas, [FaceLabel((0, 0, 40, 40), "1 happiness 0.93")], top=3)
    assert placed.label.inside(40, 40)


def test_faces_draw_returns_an_annotated_copy() -> None:
    rgb = np.full((200, 300, 3), 90, np.uint8)
    faces = Faces([face((100, 60, 80, 80), 0)])
    drawn = faces.draw(rgb)
    assert drawn.shape == rgb.shape and (drawn != rgb).any() and (rgb == 90).all()


def test_records_csv_and_json_say_the_same_in_the_models_class_order(tmp_path: Path) -> None:
    faces = Faces([face((1, 2, 30, 40), 0), face((50, 2, 30, 40), 1)], classes=CLASSES)
    records = faces.to_records("a.jpg")
    assert [r["face"] for r in records] == [1, 2] and records[0]["file"] == "a.jpg"
    text = faces.to_csv(tmp_path / "a.csv", file="a.jpg")
    assert (tmp_path / "a.csv").read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[-len(CLASSES) - 1 : -1] == list(CLASSES)  # columns in the model's order, not by score
    assert rows[1]["x"] == "50" and float(rows[1][faces[1].label]) == pytest.approx(faces[1].confidence, abs=1e-4)
    loaded = json.loads(faces.to_json(tmp_path / "a.json"))
    assert loaded == json.loads((tmp_path / "a.json").read_text()) and loaded[1]["box"] == [50, 2, 30, 40]
    empty = Faces(reason="no face found", classes=CLASSES)
    [row] = csv.DictReader(io.StringIO(empty.to_csv()))
    assert row["face"] == "" and row["reason"] == "no face found" and row["neutral"] == ""
    assert empty.to_records() == [{"file": None, "face": None, "reason": "no face found"}]
