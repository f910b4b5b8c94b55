"""Fixtures that generate small face-like datasets in every supported layout."""

from __future__ import annotations

import csv
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
"""A real portrait photo that ships with matplotlib: the face is at about x 150-380, y 100-330."""


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
    root: Path,
    classes: dict[str, int],
    splits: tuple[str, ...] = ("train", "test"),
    blur_split: str | None = None,
    prefixes: dict[str, str] | None = None,
    start_seed: int = 0,
) -> Path:
    """root/<split>/<class>/<n>.png (or root/<class>/... when splits is empty)."""
    seed = start_seed
    for split in splits or ("",):
        for name, count in classes.items():
            for _ in range(count):
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def predict_upload_scope(content_type: bytes, client: tuple[str, int]) -> dict[str, object]:
    """The ASGI scope of a POST to /v1/predict, for tests that drive the API app by hand (a client
    that stalls or drops mid-body), which no test client can do."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predict",
        "raw_path": b"/v1/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type), (b"host", b"test")],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


VOTE_HEADER = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]


def write_ferplus_folder(root: Path) -> Path:
    """A tiny FER+ folder: FER2013{Train,Valid,Test}/ with label.csv (10 votes per image, one non-face)."""
    votes_by_split = {
        "FER2013Train": [
            [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],
            [0, 8, 2, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
            [0, 0, 0, 0, 2, 0, 0, 8, 0, 0],
        ],
        "FER2013Valid": [[0, 0, 10, 0, 0, 0, 0, 0, 0, 0]],
        "FER2013Test": [[0, 0, 0, 7, 3, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]],
    }
    row = 0
    for folder, votes in votes_by_split.items():
        (root / folder).mkdir(parents=True)
        with (root / folder / "label.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            for v in votes:
                write_image(root / folder / f"fer{row:07d}.png", synthetic_face(row))
                writer.writerow([f"fer{row:07d}.png", "(0, 0, 48, 48)", *v])
                row += 1
    return root


@pytest.fixture
def class_tree(tmp_path: Path) -> Path:
    return make_class_tree(tmp_path / "faces", {"angry": 6, "Happy": 6, "Suprise": 6}, splits=())


def blob_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """Class = where the bright blob is; noise and jitter make it a real (easy) task."""
    y, x = np.mgrid[0:48, 0:48]
    cx, cy = [(12, 12), (36, 36), (36, 12)][label]
    cx, cy = cx + rng.integers(-3, 4), cy + rng.integers(-3, 4)
    image = 60 + 150 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 60.0) + rng.normal(0, 12, (48, 48))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def blob_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 24), ("val", 8), ("test", 8)):
        for label, name in enumerate(("angry", "happy", "sad")):
            count = per_class if name != "sad" else per_class // 2  # imbalanced on purpose
            for i in range(count):
                write_image(root / split / name / f"{i}.png", blob_image(label, rng))
    return root


def assert_names(text: str, *facts: object) -> None:
    """`text` names every fact (a key, a value, a path, an allowed range, a flag): what a test of a
    message checks, so rewording the sentence around the facts breaks nothing."""
    missing = [str(fact) for fact in facts if str(fact) not in text]
    assert not missing, f"{text!r} does not name {missing}"


@contextmanager
def fails_with(kind: type[BaseException], *facts: object) -> Iterator[None]:
    """The block raises `kind`, whose message names every fact (see `assert_names`)."""
    with pytest.raises(kind) as caught:
        yield
    assert_names(str(caught.value), *facts)


def invoke(*args: object) -> Result:
    """`ferlab ARGS...` run in-process; paths and numbers may be given as they are (bytes: a raw file name)."""
    from ferlab.cli.main import app

    return CliRunner().invoke(app, [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args])


def cli_error(result: Result, *facts: object, exit_code: int = 2) -> str:
    """The command failed with `exit_code` and a single `error: ...` line, no traceback, and that
    line names every fact (see `assert_names`). Returns the line."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert_names(errors[0], *facts)
    return errors[0]


TINY_RUN = {"model.name": "baseline_cnn", "model.params": "{input_size: 24}", "train.epochs": 1, "train.batch_size": 16}
"""The smallest training that runs every stage: a 24x24 CNN for one epoch (a second or two on blob_data)."""
LEARNING_RUN = {**TINY_RUN, "train.epochs": 4, "train.lr": 0.003, "augment.policy": "both", "train.mixup_alpha": 0.2}
"""A tiny run that learns the blobs and exercises augmentation and mixup."""


def tiny_config(data: Path, base: dict[str, object] = TINY_RUN, **overrides: object) -> list[str]:
    """`key=value` overrides for a tiny run on `data` (`base`, then `overrides`), as `--set` takes them."""
    values = {"data.path": data, **base, **overrides}
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def blob_model(blob_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a small CNN trained to tell the blob positions apart (about 10 s)."""
    from ferlab.training.config import build_config
    from ferlab.training.entry import train

    overrides = [
        f"data.path={blob_data}",
        "model.name=baseline_cnn",
        "train.epochs=8",
        "train.batch_size=16",
        "train.lr=0.003",
        "train.early_stopping_patience=8",
    ]
    run_dir, _ = train(build_config({"name": "blobs"}, overrides), tmp_path_factory.mktemp("runs"))
    return run_dir
