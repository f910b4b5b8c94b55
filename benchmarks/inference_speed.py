"""Inference speed on this machine: classification alone, and detect-and-classify per frame.

    python benchmarks/inference_speed.py                   # the shipped default model
    python benchmarks/inference_speed.py --model runs/x    # any run folder or model.pt

Prints faces/s at batch 1 and batch 64 for each backend, and milliseconds per 640x480
frame with 1 and with 5 faces (detection included). Frames come from
`benchmarks/detection_rate.py` (FER2013 PrivateTest faces on random backgrounds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from detection_rate import make_frame
from ferlab.evaluation.card import classification_speed
from ferlab.inference.predictor import Predictor, resolve_model
from ferlab.models.bundle import load_bundle


def frame_ms(predictor: Predictor, frames: list[np.ndarray]) -> float:
    predictor.predict(frames[0])  # warm-up
    times = []
    for frame in frames:
        started = time.perf_counter()
        predictor.predict(frame)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=None, help="run folder, model.pt or shipped name (default: the default model)"
    )
    parser.add_argument("--data", type=Path, default=Path(".data/fer2013"))
    parser.add_argument("--detector", default="auto")
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()

    bundle = load_bundle(resolve_model(args.model))
    record = bundle.record
    parameters = sum(p.numel() for p in bundle.model.parameters())
    print(f"model {record.arch} {dict(record.arch_options)} ({parameters:,} parameters)")
    for backend in ("onnx", "torch"):
        predictor = Predictor(bundle, detector=args.detector, backend=backend)  # type: ignore[arg-type]
        print(
            f"  {backend:5s} classification: {classification_speed(predictor, 1):7.0f} faces/s at batch 1, "
            f"{classification_speed(predictor, 64):7.0f} faces/s at batch 64"
        )

    files = sorted(args.data.glob("test/*/PrivateTest_*.jpg"))
    rng = np.random.default_rng(0)
    predictor = Predictor(bundle, detector=args.detector, backend="auto")
    for n_faces in (1, 5):
        picks = rng.choice(len(files), size=args.frames * n_faces, replace=False)
        frames = [
            make_frame(
                [np.asarray(Image.open(files[i]).convert("L")) for i in picks[f * n_faces : (f + 1) * n_faces]], rng
            )[0]
            for f in range(args.frames)
        ]
        print(
            f"  end to end, 640x480 frame with {n_faces} face(s), detector {predictor.detector.name}, "
            f"backend {predictor.engine.backend.name}: {frame_ms(predictor, frames):.1f} ms median"
        )


if __name__ == "__main__":
    main()
