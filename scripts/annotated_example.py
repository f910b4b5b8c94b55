"""Draw the renderer's output on a crowded picture: six FER+ test faces side by side.

python scripts/annotated_example.py            # -> docs/figures/annotated-example.png

Each FER+ test face (48x48) is enlarged to 150 pixels and set a few pixels from the next, so the
labels have to find room: above a face where there is some, below it or beside it where not,
never over another face nor off the image. The faces are the first of each class whose votes
agree and that the default model, run alone on it, reads as that class.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferlab.inference.predictor import Predictor, load

ROOT = Path(__file__).resolve().parents[1]
FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
SHOWN = ("happiness", "surprise", "neutral", "anger", "sadness", "fear")
SIZE, GAP, TOP, BOTTOM = 150, 12, 44, 84


def tile(folder: Path, name: str) -> np.ndarray:
    face = np.asarray(Image.open(folder / name).convert("RGB"))
    return cv2.resize(face, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def pick(data: Path, predictor: Predictor) -> list[np.ndarray]:
    """One clear face per shown class: at least 7 of 10 votes, read as that class on its own."""
    candidates: dict[str, list[str]] = {name: [] for name in SHOWN}
    with (data / "fer2013new.csv").open(newline="") as handle:
        for row in csv.reader(handle):
            if row[0] != "PrivateTest" or not row[1]:
                continue
            votes = [int(v) for v in row[2:10]]
            top = int(np.argmax(votes))
            if FERPLUS_CLASSES[top] in candidates and votes[top] >= 7:
                candidates[FERPLUS_CLASSES[top]].append(row[1])
    faces = []
    for name in SHOWN:
        for file in candidates[name][:40]:
            face = tile(data / "FER2013Test", file)
            alone = np.pad(face, ((40, 40), (40, 40), (0, 0)), constant_values=235)
            found = predictor.predict(alone)
            if len(found) == 1 and found[0].label.startswith(name[:3]):
                faces.append(face)
                break
    return faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / ".data" / "ferplus", help="The FER+ folder.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "annotated-example.png")
    args = parser.parse_args()
    predictor = load()
    faces = pick(args.data, predictor)
    canvas = np.full((TOP + SIZE + BOTTOM, len(faces) * (SIZE + GAP) + GAP, 3), 235, np.uint8)
    for i, face in enumerate(faces):
        x = GAP + i * (SIZE + GAP)
        canvas[TOP : TOP + SIZE, x : x + SIZE] = face
    found = predictor.predict(canvas)
    Image.fromarray(found.draw(canvas)).save(args.out)
    print(f"{len(found)} faces: {', '.join(f.label for f in found)}; wrote {args.out}")


if __name__ == "__main__":
    main()
