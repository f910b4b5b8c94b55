"""Face detection rate and time on 640x480 frames where faces are known to be present.

Frames are built from FER2013 PrivateTest faces (real faces, upscaled from 48x48) pasted
at random places and sizes onto smooth random backgrounds; a face counts as found when a
detected box's centre falls inside it. Upscaled 48-pixel faces are harder than webcam
faces, so the rates are a lower bound for sharp photos.

    python benchmarks/detection_rate.py --data .data/fer2013 --detector yunet --frames 300 --empty 200
    python benchmarks/detection_rate.py --data .data/fer2013 --detector haar --frames 300 --empty 200

`--empty` frames are the same backgrounds with no face: every detection there is a false
positive. benchmarks/pipeline.py is the harder test (sizes 24-400 px, rotation, colour,
blur, JPEG, varied backgrounds) and also measures classification through the pipeline.

Only needs numpy, OpenCV, Pillow and `ferlab.inference.detection`, so it also runs in an
environment that has mediapipe==0.10.21 installed (`--detector mediapipe`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferlab.inference.detection import create_detector


def background(rng: np.random.Generator, height: int = 480, width: int = 640) -> np.ndarray:
    coarse = rng.integers(40, 220, (6, 8, 3)).astype(np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, smooth.shape)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def make_frame(faces: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Paste gray faces side by side (no overlap) at random sizes; returns the frame and boxes."""
    frame = background(rng)
    boxes: list[tuple[int, int, int, int]] = []
    slot = 640 // len(faces)
    for i, face in enumerate(faces):
        side = int(rng.integers(90, min(200, slot)) if len(faces) > 1 else rng.integers(120, 260))
        x = int(i * slot + rng.integers(0, max(1, slot - side)))
        y = int(rng.integers(0, 480 - side))
        resized = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        frame[y : y + side, x : x + side] = resized[:, :, None]
        boxes.append((x, y, side, side))
    return frame, boxes


def found(box: tuple[int, int, int, int], detections: list[tuple[int, int, int, int]]) -> bool:
    x, y, w, h = box
    return any(x <= dx + dw / 2 <= x + w and y <= dy + dh / 2 <= y + h for dx, dy, dw, dh in detections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(".data/fer2013"), help="FER2013 folder layout")
    parser.add_argument("--detector", default="auto", help="auto (yunet), yunet, haar or mediapipe")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--faces-per-frame", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--empty", type=int, default=0, help="face-free frames, to count false positives")
    args = parser.parse_args()

    files = sorted(args.data.glob("test/*/PrivateTest_*.jpg"))
    if not files:
        raise SystemExit(f"no PrivateTest images under {args.data}/test")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(files), size=args.frames * args.faces_per_frame, replace=False)
    detector = create_detector(args.detector)
    hits = total = frames_all_found = 0
    seconds = 0.0
    for f in range(args.frames):
        faces = [
            np.asarray(Image.open(files[i]).convert("L"))
            for i in picks[f * args.faces_per_frame : (f + 1) * args.faces_per_frame]
        ]
        frame, boxes = make_frame(faces, rng)
        started = time.perf_counter()
        detections = [d.box for d in detector.detect(frame)]
        seconds += time.perf_counter() - started
        found_here = sum(found(b, detections) for b in boxes)
        hits += found_here
        total += len(boxes)
        frames_all_found += found_here == len(boxes)
    print(
        f"detector {detector.name}: {args.frames} frames of 640x480 with {args.faces_per_frame} face(s); "
        f"faces found {hits}/{total} ({100 * hits / total:.1f}%), frames with every face found "
        f"{100 * frames_all_found / args.frames:.1f}%, {1000 * seconds / args.frames:.1f} ms per frame"
    )
    if args.empty:
        false_positives = [len(detector.detect(background(rng))) for _ in range(args.empty)]
        print(
            f"  {args.empty} face-free frames: {sum(false_positives) / args.empty:.3f} false positives per frame, "
            f"{sum(1 for n in false_positives if n)} frames with any"
        )


if __name__ == "__main__":
    main()
