"""Measure where the detectors put a face's box and landmarks in FER's 48x48 training crops.

The model learned faces framed the way FER2013 framed them. To crop a face from a photo
the same way, ferlab warps its five YuNet landmarks onto their mean positions in the
training crops (`ferlab.inference.preprocess.TEMPLATE_48`) and, without landmarks, maps the
detector's box onto its mean box there (`BOX_TEMPLATES_48`). This script measures both:

    python benchmarks/face_template.py --data .data/ferplus --limit 5000

Each FER+ training face (48x48 gray) is upscaled 4x (bicubic, 192 px) and put on a mid-gray
border of 96 px on every side (the face alone fills its crop; a border gives the detector
the context a face in a photo has). The detectors run on that 384x384 image, and the
highest-scoring face whose box centre lies on the face is kept. Box and landmarks are
mapped back to the 48x48 frame and averaged. The printed constants go into preprocess.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferlab.inference.detection import HaarDetector, YuNetDetector

UPSCALE = 4
BORDER = 96
NAMES = ("right eye", "left eye", "nose tip", "right mouth corner", "left mouth corner")


def present(face: np.ndarray) -> np.ndarray:
    """A 48x48 gray face as the detectors see it: 4x upscaled on a gray border, RGB."""
    side = face.shape[0] * UPSCALE
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.copyMakeBorder(big, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT, value=127)
    return np.repeat(canvas[:, :, None], 3, axis=2)


def to_frame(values: np.ndarray) -> np.ndarray:
    """Image coordinates of the presented face -> coordinates in the 48x48 crop."""
    return (values - BORDER) / UPSCALE


def measure(files: list[Path]) -> dict[str, object]:
    yunet, haar = YuNetDetector(score_threshold=0.5, upscale_side=0), HaarDetector()  # one pass, as measured
    landmarks, yunet_boxes, haar_boxes = [], [], []
    started = time.perf_counter()
    for path in files:
        image = present(np.asarray(Image.open(path).convert("L")))
        on_face = BORDER, BORDER + 48 * UPSCALE
        for detector, boxes in ((yunet, yunet_boxes), (haar, haar_boxes)):
            faces = [
                f
                for f in detector.detect(image)
                if on_face[0] <= f.box[0] + f.box[2] / 2 <= on_face[1]
                and on_face[0] <= f.box[1] + f.box[3] / 2 <= on_face[1]
            ]
            if not faces:
                continue
            best = max(faces, key=lambda f: f.score)
            x, y, w, h = best.box
            boxes.append([to_frame(np.array(x + w / 2)), to_frame(np.array(y + h / 2)), w / UPSCALE, h / UPSCALE])
            if best.landmarks is not None:
                landmarks.append(to_frame(np.array(best.landmarks)))
    points = np.array(landmarks)
    return {
        "faces": len(files),
        "seconds": time.perf_counter() - started,
        "yunet_found": len(yunet_boxes),
        "haar_found": len(haar_boxes),
        "landmarks_mean": points.mean(0),
        "landmarks_std": points.std(0),
        "yunet_box_mean": np.mean(yunet_boxes, 0),
        "yunet_box_std": np.std(yunet_boxes, 0),
        "haar_box_mean": np.mean(haar_boxes, 0),
        "haar_box_std": np.std(haar_boxes, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(".data/ferplus"), help="FER+ folder (uses FER2013Train)")
    parser.add_argument("--limit", type=int, default=5000, help="faces to measure, a seeded random sample (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    files = sorted((args.data / "FER2013Train").glob("*.png"))
    if not files:
        raise SystemExit(f"no FER+ training images under {args.data}/FER2013Train")
    if args.limit and args.limit < len(files):
        files = [
            files[i] for i in sorted(np.random.default_rng(args.seed).choice(len(files), args.limit, replace=False))
        ]
    result = measure(files)
    n = result["faces"]
    print(
        f"{n} FER+ training faces ({result['seconds']:.0f} s): YuNet found {result['yunet_found']} "
        f"({100 * result['yunet_found'] / n:.1f}%), Haar {result['haar_found']} ({100 * result['haar_found'] / n:.1f}%)"
    )
    print("\nlandmarks in the 48x48 frame (mean, std):")
    for name, mean, std in zip(NAMES, result["landmarks_mean"], result["landmarks_std"]):  # type: ignore[call-overload]
        print(f"  {name:19s} x {mean[0]:6.2f} ({std[0]:.2f})  y {mean[1]:6.2f} ({std[1]:.2f})")
    for name in ("yunet", "haar"):
        mean, std = result[f"{name}_box_mean"], result[f"{name}_box_std"]
        print(
            f"{name} box centre x {mean[0]:.2f} ({std[0]:.2f}), y {mean[1]:.2f} ({std[1]:.2f}), "  # type: ignore[index]
            f"width {mean[2]:.2f} ({std[2]:.2f}), height {mean[3]:.2f} ({std[3]:.2f})"
        )  # type: ignore[index]
    points = result["landmarks_mean"]
    print("\nTEMPLATE_48 = (" + ", ".join(f"({x:.2f}, {y:.2f})" for x, y in points) + ")")  # type: ignore[union-attr]
    print(
        "BOX_TEMPLATES_48 = {"
        + ", ".join(
            f'"{name}": (' + ", ".join(f"{v:.2f}" for v in result[f"{name}_box_mean"]) + ")"  # type: ignore[union-attr]
            for name in ("yunet", "haar")
        )
        + "}"
    )


if __name__ == "__main__":
    main()
