"""`ferlab predict FOLDER` on thousands of photos: images/s with 1 worker and with more.

Writes --count JPEG photos (default 10,000) into a scratch folder: FER+ test faces (cycled)
upscaled to 128 px and set on a 256x256 grey background at a seeded position, so that each
photo needs decoding, detection, alignment and classification. Then runs the installed
`ferlab predict FOLDER --out faces.csv --workers W` once per --workers value, in fresh
processes, and prints images/s, faces found and whether every run gave the same labels.

    python benchmarks/batch_folder.py --data .data/ferplus                 # 10,000 photos, 1 and 2 workers
    python benchmarks/batch_folder.py --data .data/ferplus --count 2000 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions


def write_photos(data: Path, folder: Path, count: int) -> None:
    faces = load_dataset(data, options=LoadOptions(size=48, channels=1)).split("test").images
    rng = np.random.default_rng(0)
    for i in range(count):
        face = cv2.resize(faces[i % len(faces)], (128, 128), interpolation=cv2.INTER_CUBIC)
        canvas = np.full((256, 256), 110, np.uint8)
        top, left = rng.integers(0, 129, size=2)
        canvas[top : top + 128, left : left + 128] = face
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])


def run(folder: Path, workers: int, out: Path) -> float:
    command = [sys.executable, "-m", "ferlab", "predict", str(folder), "--out", str(out), "--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="A dataset with a test split (e.g. .data/ferplus).")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photos"
        folder.mkdir()
        write_photos(args.data, folder, args.count)
        print(f"{args.count} photos of 256x256 (a 128 px face each), `ferlab predict FOLDER --workers W`:")
        print("| workers | seconds (process start included) | images/s | faces found |")
        print("|---:|---:|---:|---:|")
        labels = []
        for workers in args.workers:
            out = Path(scratch) / f"faces-{workers}.csv"
            seconds = run(folder, workers, out)
            with out.open() as handle:
                rows = [row for row in csv.DictReader(handle) if row["face"]]
            labels.append([(row["file"], row["face"], row["label"]) for row in rows])
            print(f"| {workers} | {seconds:.1f} | {args.count / seconds:.0f} | {len(rows):,} |")
        print(f"same labels in every run: {all(run_labels == labels[0] for run_labels in labels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
