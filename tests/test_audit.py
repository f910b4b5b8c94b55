"""The duplicate audit: planted exact, re-encoded, shifted and relit copies are found with
the right kind; different, mirrored and blank images are not; the CLI writes its files."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.fft
from PIL import Image
from typer.testing import CliRunner

from conftest import assert_names, cli_error, fails_with
from ferlab.cli.main import app
from ferlab.data.audit import (
    AuditThresholds,
    find_duplicates,
    hash_candidates,
    leakage_splits,
    perceptual_hash,
    shifted_correlation,
)
from ferlab.data.loader import load_dataset
from ferlab.errors import FerlabError


def face(seed: int, size: int = 48) -> np.ndarray:
    """A gray image of many smooth blobs on a gradient: face-like detail, so two seeds
    are clearly different pictures (hash distance >= 16, correlation < 0.7)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = 0.6 * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y)
    for _ in range(30):
        cy, cx = rng.uniform(0.05, 0.95, 2)
        sigma = rng.uniform(0.03, 0.1)
        image += rng.uniform(-1, 1) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    image = (image - image.min()) / (image.max() - image.min())
    return (30 + 200 * image).astype(np.uint8)


def jpeg(pixels: np.ndarray, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def shifted(pixels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The picture moved by (dy, dx) pixels, edges repeated: a slightly different crop."""
    padded = np.pad(pixels, 2, mode="edge")
    return padded[2 - dy : 2 - dy + pixels.shape[0], 2 - dx : 2 - dx + pixels.shape[1]]


def save(path: Path, pixels: np.ndarray | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(pixels, bytes):
        path.write_bytes(pixels)
    else:
        Image.fromarray(pixels).save(path)


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """train/val/test of 3 classes with known duplicates (see EXPECTED_PAIRS)."""
    root = tmp_path / "planted"
    seed = 0
    for split, per_class in (("train", 3), ("val", 1)):
        for name in ("angry", "happy", "sad"):
            for k in range(per_class):
                save(root / split / name / f"{name[0]}{k}.png", face(seed))
                seed += 1
    save(root / "train/sad/s3.png", np.clip(face(8) * 0.8 + 30, 0, 255).astype(np.uint8))  # relit s2
    save(root / "train/happy/blank.png", np.full((48, 48), 128, np.uint8))
    save(root / "train/sad/blank.png", np.full((48, 48), 128, np.uint8))
    save(root / "test/angry/copy.png", face(0))  # = train/angry/a0.png
    save(root / "test/happy/jpeg.jpg", jpeg(face(1)))  # train/angry/a1.png, labelled happy
    save(root / "test/sad/shifted.png", shifted(face(6), 2, 1))  # train/sad/s0.png
    save(root / "test/angry/mirror.png", face(2)[:, ::-1])  # train/angry/a2.png mirrored
    save(root / "test/sad/dark.png", np.zeros((48, 48), np.uint8))
    for seed, name in enumerate(("angry", "happy", "sad"), start=100):
        save(root / "test" / name / "fresh.png", face(seed))
    return root


EXPECTED_PAIRS = {
    ("train/angry/a0.png", "test/angry/copy.png", "exact", True),
    ("train/angry/a1.png", "test/happy/jpeg.jpg", "near", False),
    ("train/sad/s0.png", "test/sad/shifted.png", "near", True),
    ("train/sad/s2.png", "train/sad/s3.png", "near", True),
    ("train/happy/blank.png", "train/sad/blank.png", "exact", False),
}
EXPECTED_CLEAN = [
    "test/angry/fresh.png",
    "test/angry/mirror.png",
    "test/happy/fresh.png",
    "test/sad/dark.png",
    "test/sad/fresh.png",
]


def test_finds_exactly_the_planted_duplicates(planted: Path) -> None:
    result = find_duplicates(load_dataset(planted), progress=False)
    found = {(p.source_a, p.source_b, p.kind, p.same_label) for p in result.pairs}
    assert found == EXPECTED_PAIRS
    for pair in result.pairs:
        assert pair.hamming <= result.thresholds.max_hamming
        assert pair.kind == "exact" or pair.correlation >= 0.99
    jpeg_pair = next(p for p in result.pairs if p.source_b == "test/happy/jpeg.jpg")
    assert (jpeg_pair.label_a, jpeg_pair.label_b, jpeg_pair.split_a, jpeg_pair.split_b) == (
        "angry",
        "happy",
        "train",
        "test",
    )


def test_counts_per_split_pair_class_and_label(planted: Path) -> None:
    result = find_duplicates(load_dataset(planted), progress=False)
    assert result.by_split_pair() == {
        ("train", "train"): {"exact": 1, "near": 1, "label_differs": 1},
        ("train", "test"): {"exact": 1, "near": 2, "label_differs": 1},
    }
    assert result.by_class() == {
        "sad": {"exact": 1, "near": 2, "label_differs": 1},
        "angry": {"exact": 1, "near": 1, "label_differs": 1},
        "happy": {"exact": 1, "near": 1, "label_differs": 2},
    }
    assert result.label_disagreements() == {("angry", "happy"): 1, ("happy", "sad"): 1}


def test_clean_list_drops_test_images_seen_in_train(planted: Path) -> None:
    dataset = load_dataset(planted)
    result = find_duplicates(dataset, progress=False)
    assert sorted(dataset.sources[result.leaked()]) == [
        "test/angry/copy.png",
        "test/happy/jpeg.jpg",
        "test/sad/shifted.png",
    ]
    assert sorted(result.clean()) == EXPECTED_CLEAN
    # Against train and val nothing more leaks; val itself as the query is all clean.
    assert sorted(result.clean(("train", "val"))) == EXPECTED_CLEAN
    assert len(result.clean(("train",), ("val",))) == 3


def test_against_finds_the_second_datasets_copies(planted: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    save(other / "angry/x.png", face(2))  # = train/angry/a2.png
    save(other / "happy/y.jpg", jpeg(face(4)))  # train/happy/h1.png
    save(other / "sad/z.png", face(200))
    result = find_duplicates(load_dataset(planted), load_dataset(other), progress=False)
    assert {(p.source_a, p.source_b, p.kind) for p in result.pairs} == {
        ("train/angry/a2.png", "angry/x.png", "exact"),
        ("train/happy/h1.png", "happy/y.jpg", "near"),
    }
    assert list(result.clean()) == ["sad/z.png"]  # every split of the second dataset is queried


def test_shift_search_confirms_a_shifted_crop() -> None:
    original = face(0).astype(np.float32)[None]
    moved = shifted(face(0), 2, 1).astype(np.float32)[None]
    assert shifted_correlation(original, moved, 0)[0] < 0.95
    assert shifted_correlation(original, moved, 2)[0] > 0.999
    assert shifted_correlation(moved, original, 2)[0] > 0.999  # either direction


def test_constant_images_score_zero_without_warnings() -> None:
    blank = np.full((2, 48, 48), 7, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shifted_correlation(blank, face(1).astype(np.float32)[None].repeat(2, 0), 2).tolist() == [0, 0]
        assert perceptual_hash(np.zeros((1, 48, 48, 1), np.uint8))[0] == 0


def test_hash_is_the_dct_phash_and_ignores_brightness() -> None:
    images = np.stack([face(seed) for seed in range(20)])
    for pixels, value in zip(images, perceptual_hash(images[..., None])):
        small = cv2.resize(pixels.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
        block = scipy.fft.dctn(small, type=2)[:8, :8].ravel()
        bits = block > np.median(block[1:])
        bits[0] = False
        assert int(value) == sum(1 << int(k) for k in np.flatnonzero(bits))
    relit = np.clip(images.astype(np.int32) + 20, 0, 255).astype(np.uint8)
    assert (perceptual_hash(relit[..., None]) == perceptual_hash(images[..., None])).all()


def test_hash_candidates_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, 40, dtype=np.uint64)
    b = rng.integers(0, 2**63, 30, dtype=np.uint64)
    distance = lambda x, y: (int(x) ^ int(y)).bit_count()  # noqa: E731
    i, j, d = hash_candidates(a, None, 30, chunk=7)
    assert set(zip(i.tolist(), j.tolist(), d.tolist())) == {
        (p, q, distance(a[p], a[q])) for p in range(40) for q in range(p + 1, 40) if distance(a[p], a[q]) <= 30
    }
    i, j, d = hash_candidates(a, b, 30, chunk=7)
    assert set(zip(i.tolist(), j.tolist(), d.tolist())) == {
        (p, q, distance(a[p], b[q])) for p in range(40) for q in range(30) if distance(a[p], b[q]) <= 30
    }
    with fails_with(FerlabError, "100", "pairs"):  # the limit that was passed
        hash_candidates(a, b, 64, max_candidates=100)


@pytest.mark.parametrize(
    ("kwargs", "facts"),
    [
        ({"max_hamming": 65}, ("65", "64")),  # the value, the largest allowed
        ({"min_correlation": 0}, ("min correlation", "(0, 1]")),
        ({"max_shift": -1}, ("max shift", "-1")),
    ],
)
def test_bad_thresholds_are_user_errors(kwargs: dict[str, float], facts: tuple[str, ...]) -> None:
    with fails_with(FerlabError, *facts):
        AuditThresholds(**kwargs)  # type: ignore[arg-type]


def test_bad_splits_and_shift_are_user_errors(planted: Path) -> None:
    dataset = load_dataset(planted)
    with pytest.raises(FerlabError, match="overlap"):
        leakage_splits(dataset, None, ("train", "test"))
    with fails_with(FerlabError, "'dev'"):
        leakage_splits(dataset, None, ("dev",))
    with fails_with(FerlabError, "13", "48x48"):  # the shift, the image size it does not fit
        find_duplicates(dataset, thresholds=AuditThresholds(max_shift=13), progress=False)


def test_cli_writes_pairs_summary_and_clean_split(planted: Path, tmp_path: Path) -> None:
    out, clean = tmp_path / "report", tmp_path / "clean.txt"
    runner = CliRunner()
    result = runner.invoke(app, ["data", "audit", str(planted), "--out", str(out), "--write-clean-split", str(clean)])
    assert result.exit_code == 0, result.output
    assert_names(result.output, "5 duplicate pairs", "2 exact", "3 near", "leakage", "3 of 8")
    with (out / "pairs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["source_a"], r["source_b"], r["kind"], r["same_label"] == "True") for r in rows} == EXPECTED_PAIRS
    jpeg_row = next(r for r in rows if r["source_b"] == "test/happy/jpeg.jpg")
    assert (jpeg_row["label_a"], jpeg_row["label_b"]) == ("angry", "happy")
    summary = (out / "summary.md").read_text()
    assert "| train | test | 1 | 2 | 1 |" in summary and "| train | train | 1 | 1 | 1 |" in summary
    lines = clean.read_text().splitlines()
    assert lines[0].startswith("# ferlab data audit: the test images of")
    assert [line for line in lines if not line.startswith("#")] == EXPECTED_CLEAN

    bad = runner.invoke(app, ["data", "audit", str(planted), "--min-correlation", "1.5"])
    cli_error(bad, "min correlation", "(0, 1]", "1.5")
    assert len(bad.output.strip().splitlines()) == 1


def test_a_clean_validation_list_follows_the_split_seed_of_the_run(tmp_path: Path) -> None:
    from conftest import make_class_tree
    from ferlab.training.config import build_config
    from ferlab.training.data import load_training_data

    data = make_class_tree(tmp_path / "faces", {"angry": 10, "happy": 10, "sad": 10}, splits=())
    lists = {}
    for seed in (0, 3):
        lists[seed] = tmp_path / f"val-clean-{seed}.txt"
        result = CliRunner().invoke(
            app,
            [
                "data",
                "audit",
                str(data),
                "--out",
                str(tmp_path / f"audit{seed}"),
                "--split-seed",
                str(seed),
                "--query-split",
                "val",
                "--write-clean-split",
                str(lists[seed]),
            ],
        )
        assert result.exit_code == 0, result.output

    def config(clean: Path) -> object:
        return build_config({"name": "r"}, [f"data.path={data}", "data.split_seed=3", f"data.val_clean={clean}"])

    assert len(load_training_data(config(lists[3]), 48, 1).split("val")) == 3  # nothing duplicated
    with pytest.raises(FerlabError, match="lists training images"):
        load_training_data(config(lists[0]), 48, 1)
