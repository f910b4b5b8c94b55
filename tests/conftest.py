"""Fixtures that generate small face-like datasets in every supported layout."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own dataset cache, so no test reads another's (or the user's)."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FERLAB_CACHE_DIR", str(cache))
    return cache


def synthetic_face(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random gray image with face-like blobs (not noise, so hashes and blur mean something)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = 90 + 60 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0, 1)))
    for _ in range(6):
        cx, cy, r = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.05, 0.2)
        image += rng.uniform(-90, 90) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    image += rng.normal(0, 6, image.shape)  # fine texture, so sharpness is measurable
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_class_tree(
    root: Path, classes: dict[str, int], splits: tuple[str, ...] = ("train", "test"),
    blur_split: str | None = None, prefixes: dict[str, str] | None = None, start_seed: int = 0,
) -> Path:
    """root/<split>/<class>/<n>.png (or root/<class>/... when splits is empty)."""
    seed = start_seed
    for split in splits or ("",):
        for name, count in classes.items():
            for i in range(count):
                pixels = synthetic_face(seed)
                if split == blur_split:
                    pixels = cv2.GaussianBlur(pixels, (0, 0), 3.25)
                prefix = (prefixes or {}).get(split, "")
                folder = root / split / name if split else root / name
                write_image(folder / f"{prefix}{seed:05d}.png", pixels)
                seed += 1
    return root


def write_fer2013_csv(path: Path, rows: list[tuple[int, np.ndarray, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for emotion, pixels, usage in rows:
            writer.writerow([emotion, " ".join(map(str, pixels.ravel().tolist())), usage])
    return path


VOTE_HEADER = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]


@pytest.fixture
def class_tree(tmp_path: Path) -> Path:
    return make_class_tree(tmp_path / "faces", {"angry": 6, "Happy": 6, "Suprise": 6}, splits=())
