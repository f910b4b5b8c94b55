"""ferlab against the `fer` package, side by side, in interleaved rounds on this machine.

    python benchmarks/vs_fer.py                         # ferlab's rows; fer's too if importable
    python benchmarks/vs_fer.py --fer-python /tmp/ferenv/bin/python --rounds 5
    python benchmarks/vs_fer.py --model ferplus8 --model ferplus8-fast --fer-python /tmp/ferenv/bin/python

Every round starts one fresh process per contender (each ferlab model given, then fer), so
all see the same machine state; the table gives the median over rounds, the range, and the
ratio of each ferlab model's time to fer's (below 1 means ferlab is faster). Rows:
classifying pre-cropped faces as served (a model finished with `train.tta: flip` runs each
face and its mirror image) at batch 1 and 64 with 1 thread and with the library's default
threads, a 640x480 frame with 1 and 5 faces (detection included), process start to first
prediction through each Python API, and peak resident memory.

`fer` (TFLite mini-Xception and Haar) pulls GBs of CUDA with a plain `pip install fer`; make
its environment as docs/speed.md says and pass its interpreter with --fer-python.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
FRAME = (480, 640)


# -- inputs shared by both contenders -------------------------------------------------------------


def test_faces(data: str, n: int) -> np.ndarray:
    """n grey 48x48 FER+ test faces (uint8), read directly so the worker stays light."""
    import cv2

    folder = Path(data) / "FER2013Test"
    files = sorted(folder.glob("*.png"))[:n]
    if not files:
        raise SystemExit(f"no FER+ test faces in {folder}: unpack ../shared/datasets/ferplus.tar.gz into .data")
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])


def frame_with_faces(faces: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """A 640x480 BGR frame: a textured background with `count` faces at 110-150 px, in a row."""
    import cv2

    rng = np.random.default_rng(seed)
    height, width = FRAME
    yy, xx = np.mgrid[:height, :width]
    background = 90 + 60 * np.sin(xx / 70) * np.cos(yy / 50) + rng.normal(0, 6, (height, width))
    frame = np.repeat(np.clip(background, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    frame[..., 0] = np.clip(frame[..., 0] * 0.8 + 30, 0, 255)  # a little colour
    size = 150 if count == 1 else 110
    step = width // count
    for k in range(count):
        face = cv2.resize(faces[k], (size, size), interpolation=cv2.INTER_CUBIC)
        x = k * step + (step - size) // 2
        y = (height - size) // 2 + (20 if k % 2 else -20) * (count > 1)
        frame[y : y + size, x : x + size] = face[..., None]
    return frame


def _timed(call: Callable[[], Any], seconds: float = 2.0, minimum: int = 5) -> float:
    """Median seconds per call over about `seconds` of repeated calls (after one warm-up)."""
    call()
    times: list[float] = []
    budget = time.perf_counter() + seconds
    while len(times) < minimum or time.perf_counter() < budget:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- workers: one fresh process per contender and round --------------------------------------------


def ferlab_worker(args: argparse.Namespace, spawned: float) -> dict[str, float]:
    import ferlab

    faces = test_faces(args.data, 64)
    frames = {n: frame_with_faces(faces, n) for n in (1, 5)}
    predictor = ferlab.load(args.model)
    found = len(predictor.predict(frames[1], bgr=True))
    first = time.time() - spawned
    row: dict[str, float] = {
        "start_to_first_prediction_s": first,
        "faces_found_1": found,
        "faces_found_5": len(predictor.predict(frames[5], bgr=True)),
    }
    for n in (1, 5):
        row[f"frame_{n}_faces_ms"] = 1000 * _timed(lambda n=n: predictor.predict(frames[n], bgr=True))
    size, channels = predictor.record.input_size, predictor.record.in_channels  # not .bundle: that imports torch
    crops = np.stack([np.repeat(f[..., None], channels, axis=2) for f in faces])
    if size != crops.shape[1]:
        import cv2

        crops = np.stack([cv2.resize(c, (size, size)).reshape(size, size, -1) for c in crops])
    for threads, label in ((1, "1t"), (None, "default")):
        served = ferlab.load(args.model, threads=threads)  # with the model's test-time flips, if it has them
        for batch in (1, 64):
            seconds = _timed(lambda b=batch, c=served: c.classify(crops[:b]))
            row[f"classify_b{batch}_{label}_faces_s"] = batch / seconds
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def fer_worker(args: argparse.Namespace, spawned: float) -> dict[str, float]:
    import cv2
    from fer.fer import FER

    faces = test_faces(args.data, 64)
    frames = {n: frame_with_faces(faces, n) for n in (1, 5)}
    detector = FER()  # Haar + the TFLite mini-Xception, fer's defaults
    found = len(detector.detect_emotions(frames[1]))
    first = time.time() - spawned
    row: dict[str, float] = {
        "start_to_first_prediction_s": first,
        "faces_found_1": found,
        "faces_found_5": len(detector.detect_emotions(frames[5])),
    }
    for n in (1, 5):
        row[f"frame_{n}_faces_ms"] = 1000 * _timed(lambda n=n: detector.detect_emotions(frames[n]))
    inputs = ((np.stack([cv2.resize(f, (64, 64)) for f in faces]).astype(np.float32) / 255.0) - 0.5) * 2.0
    import tensorflow as tf

    model = Path(__import__("fer").__file__).parent / "data" / "emotion_model_quantized.tflite"
    for threads, label in ((1, "1t"), (None, "default")):
        # fer's own classification path (_classify_emotions), on an interpreter with this thread count
        FER._tflite_interpreter_cache = tf.lite.Interpreter(model_path=str(model), num_threads=threads)
        FER._tflite_interpreter_cache.allocate_tensors()
        classify = FER()._classify_emotions
        for batch in (1, 64):
            seconds = _timed(lambda b=batch, c=classify: c(inputs[:b]))
            row[f"classify_b{batch}_{label}_faces_s"] = batch / seconds
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


# -- the parent: interleaved rounds and the table -------------------------------------------------

ROWS = [  # key, label, higher is better
    ("classify_b1_1t_faces_s", "classify, batch 1, 1 thread (faces/s)", True),
    ("classify_b64_1t_faces_s", "classify, batch 64, 1 thread (faces/s)", True),
    ("classify_b1_default_faces_s", "classify, batch 1, default threads (faces/s)", True),
    ("classify_b64_default_faces_s", "classify, batch 64, default threads (faces/s)", True),
    ("frame_1_faces_ms", "640x480 frame, 1 face (ms)", False),
    ("frame_5_faces_ms", "640x480 frame, 5 faces (ms)", False),
    ("start_to_first_prediction_s", "process start to first prediction (s)", False),
    ("peak_rss_mb", "peak resident memory (MB)", False),
    ("faces_found_1", "faces found in the 1-face frame", True),
    ("faces_found_5", "faces found in the 5-face frame", True),
]


def run_worker(python: str, contender: str, model: str, args: argparse.Namespace) -> dict[str, float]:
    command = [python, str(HERE), "--worker", contender, "--data", args.data, "--model", model]
    command += ["--spawned", repr(time.time())]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    if done.returncode != 0:
        raise SystemExit(f"the {contender} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fer_python(requested: str | None) -> str | None:
    if requested:
        return requested
    probe = subprocess.run([sys.executable, "-c", "import fer.fer"], check=False, capture_output=True)
    return sys.executable if probe.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=".data/ferplus")
    parser.add_argument(
        "--model",
        action="append",
        help="a ferlab model (shipped name or path; repeatable; default: the shipped default)",
    )
    parser.add_argument("--fer-python", help="a Python interpreter that can import fer (default: this one, if it can)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", choices=("ferlab", "fer"), help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # the fer worker runs in fer's environment, without ferlab: no ferlab import on its way
        args.model = args.model[-1]
        worker = ferlab_worker if args.worker == "ferlab" else fer_worker
        print(json.dumps(worker(args, args.spawned)))
        return 0
    from ferlab.models.shipped import DEFAULT_MODEL

    args.model = args.model or [DEFAULT_MODEL]
    if "fer" in args.model or len(set(args.model)) < len(args.model):
        parser.error("--model: each ferlab model once, and none called 'fer' (that column is the fer package)")

    other = fer_python(args.fer_python)
    if other is None:
        print(
            "fer is not importable here (see docs/speed.md, or pass --fer-python): ferlab's rows only", file=sys.stderr
        )
    contenders = dict.fromkeys(args.model, (sys.executable, "ferlab"))
    if other:
        contenders["fer"] = (other, "fer")
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for k in range(args.rounds):
        for name, (python, kind) in contenders.items():
            rounds[name].append(run_worker(python, kind, name, args))
        print(f"round {k + 1}/{args.rounds} done", file=sys.stderr)
    if args.json:  # first: a table that fails to print loses no measurement
        args.json.write_text(json.dumps({"models": args.model, "rounds": rounds, "cpus": os.cpu_count()}, indent=1))
    print_table(rounds, args)
    return 0


def print_table(rounds: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    names = list(rounds)
    ratios = [n for n in names if n != "fer"] if "fer" in rounds else []
    header = "| | " + " | ".join(f"{n} median (range)" for n in names)
    header += "".join(f" | {n} ÷ fer (time)" for n in ratios) + " |"
    print(
        f"{args.rounds} interleaved rounds, ferlab models {', '.join(args.model)}, {os.cpu_count()} CPUs, "
        f"{shutil.which('python') and sys.version.split()[0]}"
    )
    print(header)
    print("|---|" + "---:|" * (len(names) + len(ratios)))
    for key, label, higher_better in ROWS:
        cells = []
        medians = {}
        for name in names:
            values = [r[key] for r in rounds[name]]
            medians[name] = statistics.median(values)
            digits = 0 if max(values) >= 100 else (1 if max(values) >= 10 else 2)
            cells.append(f"{medians[name]:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})")
        for name in ratios:
            if key.startswith("faces_found"):
                cells.append("")
                continue
            ratio = medians["fer"] / medians[name] if higher_better else medians[name] / medians["fer"]
            cells.append(f"{ratio:.2f}×")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
