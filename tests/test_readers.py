"""Every dataset reader on generated fixtures, plus the bad-input cases."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    VOTE_HEADER,
    assert_names,
    cli_error,
    fails_with,
    invoke,
    make_class_tree,
    synthetic_face,
    write_fer2013_csv,
    write_ferplus_folder,  # also imported from here by test_training.py until it takes it from conftest
    write_image,
)
from ferlab.data import loader
from ferlab.data.ferplus import majority_labels
from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.errors import FerlabError
from ferlab.labels import FER2013, FERPLUS


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_folder_with_fer2013_prefixes_uses_them_as_splits(tmp_path: Path) -> None:
    root = tmp_path / "fer"
    make_class_tree(root, {"angry": 3, "happy": 3}, splits=("train",), prefixes={"train": "Training_"})
    for i, prefix in enumerate(["PublicTest_", "PrivateTest_", "PrivateTest_"]):
        write_image(root / "test" / "happy" / f"{prefix}{i}.jpg", synthetic_face(100 + i))
    dataset = load_dataset(root)
    assert dataset.label_set.classes == ("angry", "happy")
    assert dataset.class_counts() == {
        "train": {"angry": 3, "happy": 3},
        "val": {"angry": 0, "happy": 1},
        "test": {"angry": 0, "happy": 2},
    }
    assert dataset.images.shape == (9, 48, 48, 1) and dataset.images.dtype == np.uint8
    assert "test/happy/PublicTest_0.jpg" in dataset.sources.tolist()


def test_class_only_folder_gets_a_seeded_stratified_split(class_tree: Path) -> None:
    options = LoadOptions(seed=3, val_fraction=0.2, test_fraction=0.2)
    first = load_dataset(class_tree, options=options, use_cache=False)
    again = load_dataset(class_tree, options=options, use_cache=False)
    assert first.label_set.classes == ("angry", "happy", "surprise")  # "Happy", "Suprise" canonicalised
    assert first.split_names() == ["train", "val", "test"]
    np.testing.assert_array_equal(first.splits, again.splits)
    for split in ("val", "test"):  # stratified: every class in every split
        assert set(first.split(split).labels.tolist()) == {0, 1, 2}


def test_train_and_test_without_val_carves_val_from_train(tmp_path: Path) -> None:
    root = make_class_tree(tmp_path / "d", {"sad": 10, "fear": 10})
    dataset = load_dataset(root, options=LoadOptions(val_fraction=0.2))
    counts = dataset.class_counts()
    assert counts["test"] == {"fear": 10, "sad": 10}
    assert counts["val"] == {"fear": 2, "sad": 2} and counts["train"] == {"fear": 8, "sad": 8}


def test_rgb_and_resize_options(class_tree: Path) -> None:
    dataset = load_dataset(class_tree, options=LoadOptions(size=32, channels=3))
    assert dataset.images.shape[1:] == (32, 32, 3)
    assert dataset.original_sizes.tolist()[0] == [48, 48]
    assert set(dataset.original_modes.tolist()) == {"L"}


def test_unknown_class_folder_lists_known_names(class_tree: Path) -> None:
    write_image(class_tree / "bored" / "x.png", synthetic_face(1))
    with fails_with(FerlabError, "'bored'", "angry", "happy"):  # the folder's name and the known ones
        load_dataset(class_tree)


def test_unreadable_files_are_skipped_with_one_warning(class_tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    (class_tree / "angry" / "zero.png").write_bytes(b"")
    (class_tree / "angry" / "text.jpg").write_text("not an image")
    good = (class_tree / "Happy" / "00006.png").read_bytes()
    (class_tree / "Happy" / "truncated.png").write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING, logger="ferlab.data"):
        dataset = load_dataset(class_tree)
    assert len(dataset) == 18
    [record] = [r for r in caplog.records if "skipped" in r.getMessage()]
    message = record.getMessage()
    assert_names(message, "skipped 3", "zero.png", "text.jpg", "truncated.png")


def test_user_folder_is_never_modified(class_tree: Path) -> None:
    (class_tree / "angry" / "broken.png").write_bytes(b"\x89PNG broken")
    before = snapshot(class_tree)
    load_dataset(class_tree)
    load_dataset(class_tree)
    assert snapshot(class_tree) == before


@pytest.mark.parametrize(
    "setup, fact",
    [
        (lambda p: p, "no such"),
        (lambda p: (p.mkdir(), p)[1], "class folders"),
        (lambda p: ((p / "happy").mkdir(parents=True), p)[1], "no image files"),
        (lambda p: (p.mkdir(), (p / "x.txt").write_text("hi"), p / "x.txt")[2], ".csv"),  # what a dataset can be
    ],
)
def test_missing_or_empty_sources_give_one_clear_error(tmp_path: Path, setup, fact: str) -> None:
    target = setup(tmp_path / "data")
    with fails_with(FerlabError, target, fact):
        load_dataset(target)


def test_all_files_unreadable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d" / "happy").mkdir(parents=True)
    (tmp_path / "d" / "happy" / "a.png").write_bytes(b"junk")
    with fails_with(FerlabError, tmp_path / "d", "1 image file"):
        load_dataset(tmp_path / "d")


def test_cache_hits_and_invalidates_on_change(class_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dataset(class_tree)
    calls = []
    original = loader.read_folder
    monkeypatch.setattr(loader, "read_folder", lambda *a: calls.append(1) or original(*a))
    cached = load_dataset(class_tree)
    assert calls == []
    np.testing.assert_array_equal(first.images, cached.images)
    assert cached.label_set == first.label_set and cached.sources.tolist() == first.sources.tolist()
    write_image(class_tree / "angry" / "new.png", synthetic_face(999))
    assert len(load_dataset(class_tree)) == len(first) + 1 and calls == [1]
    load_dataset(class_tree, options=LoadOptions(size=40))  # other options, other cache entry
    assert calls == [1, 1]


# --- fer2013.csv -----------------------------------------------------------------------


def fer_rows(n_per_usage: int = 3) -> list[tuple[int, np.ndarray, str]]:
    rows = []
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for _ in range(n_per_usage):
            rows.append((len(rows) % 7, synthetic_face(len(rows)), usage))
    return rows


def test_fer2013_csv_reads_labels_splits_and_row_ids(tmp_path: Path) -> None:
    rows = fer_rows()
    dataset = load_dataset(write_fer2013_csv(tmp_path / "fer2013.csv", rows))
    assert dataset.label_set == FER2013
    assert dataset.labels.tolist() == [r[0] for r in rows]
    assert dataset.splits.tolist() == ["train"] * 3 + ["val"] * 3 + ["test"] * 3
    np.testing.assert_array_equal(dataset.images[4, :, :, 0], rows[4][1])
    assert dataset.sources[4] == "fer2013.csv:4"


def test_fer2013_csv_skips_malformed_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_fer2013_csv(tmp_path / "fer2013.csv", fer_rows())
    with path.open("a") as handle:
        handle.write("2,1 2 3,Training\n9," + " ".join(["0"] * 2304) + ",Training\n")
    with caplog.at_level(logging.WARNING, logger="ferlab.data"):
        dataset = load_dataset(path)
    assert len(dataset) == 9
    assert_names(caplog.text, "skipped 2", "csv row", path)


def test_csv_with_wrong_columns_names_them(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("file,label\na.png,happy\n")
    with fails_with(FerlabError, path, "FER2013", "file, label"):  # the columns found
        load_dataset(path)
    path.write_text("emotion,pixel_values\n")
    with fails_with(FerlabError, path, "FER2013", "emotion, pixel_values"):
        load_dataset(path)
    with pytest.raises(FerlabError, match="missing column"):
        load_dataset(path, format="fer2013-csv")


def test_a_csv_saved_with_a_byte_order_mark_reads_and_one_in_utf16_is_one_line(tmp_path: Path) -> None:
    rows = fer_rows()
    plain = write_fer2013_csv(tmp_path / "fer2013.csv", rows)
    excel = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" starts with a byte-order mark
    excel.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert load_dataset(excel).labels.tolist() == [r[0] for r in rows]
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text(plain.read_text(), encoding="utf-16")
    cli_error(invoke("data", "info", utf16), "UTF-8")


# --- FER+ ------------------------------------------------------------------------------


def test_majority_follows_the_ferplus_authors_rule() -> None:
    votes = np.array(
        [
            [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],  # neutral 6 of 9 after single votes dropped
            [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # 4 of 9 after dropping the single: no majority
            [1, 0, 0, 0, 0, 0, 0, 0, 9, 0],  # unknown wins
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # no votes
            [0, 5, 4, 1, 0, 0, 0, 0, 0, 0],  # 5 of 9: happy
        ]
    )
    assert majority_labels(votes, "strict").tolist() == [0, -1, -1, -1, -1, 1]
    assert majority_labels(votes, "plurality").tolist() == [0, 0, -1, -1, -1, 1]
    with pytest.raises(FerlabError):
        majority_labels(votes, "mean")


def test_ferplus_folder_keeps_votes_and_drops_non_faces(tmp_path: Path) -> None:
    dataset = load_dataset(write_ferplus_folder(tmp_path / "ferplus"))
    assert dataset.label_set == FERPLUS
    assert [FERPLUS.classes[i] for i in dataset.labels] == ["neutral", "happy", "contempt", "surprise", "sad"]
    assert dataset.splits.tolist() == ["train"] * 3 + ["val", "test"]
    assert dataset.votes is not None and dataset.votes[1].tolist() == [0, 8, 2, 0, 0, 0, 0, 0, 0, 0]
    soft = dataset.soft_targets()
    np.testing.assert_allclose(soft[0, :4], [6 / 8, 0, 1 / 8, 1 / 8])  # unknown votes left out
    np.testing.assert_allclose(soft.sum(axis=1), 1)


def test_ferplus_label_csv_with_wrong_columns(tmp_path: Path) -> None:
    root = write_ferplus_folder(tmp_path / "ferplus")
    (root / "FER2013Test" / "label.csv").write_text("fer0000005.png,(0, 0, 48, 48),1,2\n")
    label_csv = root / "FER2013Test" / "label.csv"
    with fails_with(FerlabError, f"{label_csv}:1", "10 vote"):  # the file and line, the columns it needs
        load_dataset(root)
    for votes in ("inf", "99999", "-1", "2.5"):  # used to overflow int16 or pass as a count
        (root / "FER2013Test" / "label.csv").write_text(f'fer0000005.png,"(0, 0, 48, 48)",{votes},1,1,1,1,1,1,1,1,1\n')
        with fails_with(FerlabError, f"{label_csv}:1", "whole numbers", "1000"):  # the line, the allowed range
            load_dataset(root)


def test_fer2013_csv_with_ferplus_votes(tmp_path: Path) -> None:
    rows = fer_rows(2)
    csv_path = write_fer2013_csv(tmp_path / "fer2013.csv", rows)
    new_path = tmp_path / "fer2013new.csv"
    votes = [
        [0, 9, 1, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [8, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 7, 3, 0, 0, 0],
        [0, 0, 0, 0, 10, 0, 0, 0, 0, 0],
    ]
    with new_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Usage", "Image name", *VOTE_HEADER])
        for i, (v, (_, _, usage)) in enumerate(zip(votes, rows)):
            writer.writerow([usage, "" if i == 2 else f"fer{i:07d}.png", *v])
    dataset = load_dataset(csv_path, ferplus_labels=new_path)
    assert dataset.label_set == FERPLUS
    assert dataset.sources.tolist() == ["fer2013.csv:0", "fer2013.csv:3", "fer2013.csv:4", "fer2013.csv:5"]
    assert [FERPLUS.classes[i] for i in dataset.labels] == ["happy", "neutral", "disgust", "angry"]
    assert dataset.splits.tolist() == ["train", "val", "test", "test"]

    new_path.write_text(new_path.read_text().rsplit("\n", 2)[0] + "\n")  # one row short
    with fails_with(FerlabError, new_path, f"{len(rows) - 1} rows", len(rows)):  # the file, both row counts
        load_dataset(csv_path, ferplus_labels=new_path)
    with pytest.raises(FerlabError, match="no such file"):
        load_dataset(csv_path, ferplus_labels=tmp_path / "absent.csv")


def test_remap_drops_classes_the_target_lacks(tmp_path: Path) -> None:
    from ferlab.labels import FIVE, map_labels

    dataset = load_dataset(write_fer2013_csv(tmp_path / "fer2013.csv", fer_rows(4)))
    five = dataset.remap(map_labels(FER2013, FIVE))
    kept = [FER2013.classes[label] for label in dataset.labels if FER2013.classes[label] in FIVE.classes]
    assert [FIVE.classes[i] for i in five.labels] == kept
    assert five.label_set == FIVE


# --- a real slice of ../shared/datasets -------------------------------------------------


@pytest.fixture(scope="module")
def real_ferplus_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tarfile

    from conftest import SHARED_DATASETS

    archive = SHARED_DATASETS / "ferplus.tar.gz"
    if not archive.is_file():
        pytest.skip(f"real-data slice needs {archive} (../shared is absent)")
    target = tmp_path_factory.mktemp("real")
    with tarfile.open(archive) as tar:
        wanted = [m for m in tar if m.name.startswith("ferplus/FER2013Test/")]
        tar.extractall(target, members=wanted, filter="data")
    return target / "ferplus" / "FER2013Test"


@pytest.mark.real_data
def test_real_ferplus_test_split_has_the_published_size(real_ferplus_test: Path) -> None:
    """FER2013Test with the authors' majority rule keeps 3,137 of its 3,573 images."""
    dataset = load_dataset(real_ferplus_test)
    assert len(dataset) == 3137 and set(dataset.splits.tolist()) == {"test"}
    assert dataset.class_counts()["test"]["happy"] == 892
    assert os.path.basename(dataset.sources[0]).startswith("fer")


def test_decoding_many_files_draws_no_progress_bar_into_a_log(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A bar redrawn on a terminal is hundreds of lines in a log file (here: captured stderr)."""
    from PIL import Image

    from ferlab.data.imageio import read_face_files

    paths = []
    for i in range(2000):  # the bar shows from 2,000 files on
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((4, 4), i % 256, np.uint8)).save(paths[-1])
    images, *_ = read_face_files(paths, 4, 1, tmp_path, describe="reading faces")
    assert len(images) == 2000
    assert "reading faces" not in capsys.readouterr().err
