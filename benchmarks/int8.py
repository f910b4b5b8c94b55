"""fp32 against int8: accuracy on a test split and classification speed, through ONNX Runtime.

    python benchmarks/int8.py ferplus8 --data .data/ferplus

The int8 export must exist (`ferlab export MODEL --int8 --calibration TRAINING_DATA`; the
default model ships one). Speed is faces/s with 1 intra-op thread (the default), median of
interleaved rounds; accuracy is on every image of the split, so the two rows differ only by
precision. Both run as the model is served (with its `train.tta`, e.g. flip: two views per
face). ferlab uses int8 by default only where this shows it within 0.3 points of fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.errors import run_script
from ferlab.evaluation.evaluator import align_labels
from ferlab.inference.engine import LogitEngine, served_tta
from ferlab.inference.predictor import resolve_model
from ferlab.models.bundle import load_bundle


def faces_per_second(classify: Callable[[np.ndarray], object], faces: np.ndarray, seconds: float = 1.5) -> float:
    """Faces per second of repeated `classify(faces)` calls for about `seconds`, after one warm-up."""
    classify(faces)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classify(faces)
        done += len(faces)
    return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--data", default=".data/ferplus")
    parser.add_argument("--split", default="test")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bundle = load_bundle(resolve_model(args.model))
    record = bundle.record
    dataset = load_dataset(args.data, options=LoadOptions(size=record.input_size, channels=record.in_channels))
    part, outputs, _ = align_labels(dataset.split(args.split), bundle.record.labels)
    tta = served_tta(bundle.record.tta)
    classifiers = {p: LogitEngine.for_bundle(bundle, "onnx", p, threads=1) for p in ("fp32", "int8")}
    accuracy = {
        p: float((c.logits(part.images, tta)[:, outputs].argmax(1) == part.labels).mean())
        for p, c in classifiers.items()
    }
    speeds: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch in (1, 64):
            for precision, classifier in classifiers.items():
                speed = faces_per_second(lambda faces, c=classifier: c.logits(faces, tta), part.images[:batch])
                speeds.setdefault((precision, batch), []).append(speed)
    print(
        f"{args.model} on {len(part.labels)} {args.split} images of {args.data}; test-time augmentation {tta}; "
        "ONNX Runtime, 1 thread, "
        f"median of {args.rounds} interleaved rounds"
    )
    print("| precision | accuracy | faces/s, batch 1 | faces/s, batch 64 | file |")
    print("|---|---:|---:|---:|---|")
    for precision, classifier in classifiers.items():
        backend = classifier.backend
        print(
            f"| {precision} | {100 * accuracy[precision]:.2f} % | {statistics.median(speeds[precision, 1]):.0f} | "
            f"{statistics.median(speeds[precision, 64]):.0f} | `{backend.path.name}` "
            f"({backend.path.stat().st_size / 1e6:.1f} MB) |"
        )
    return 0


if __name__ == "__main__":
    run_script(main)
