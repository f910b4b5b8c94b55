"""The original `fer2013.csv` (emotion,pixels,Usage), optionally with FER+'s `fer2013new.csv`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ferlab.data.dataset import FERPLUS_VOTE_COLUMNS, FaceDataset
from ferlab.data.ferplus import MAX_VOTES, labels_from_votes, vote_counts
from ferlab.data.imageio import resize
from ferlab.data.log import warn_skipped
from ferlab.data.options import LoadOptions
from ferlab.data.splits import assign_missing_splits
from ferlab.errors import FerlabError
from ferlab.labels import FER2013, FERPLUS

FER2013_SIDE = 48
USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def _open_csv(path: Path, required: tuple[str, ...]) -> tuple[csv.DictReader, object]:
    if not path.is_file():
        raise FerlabError(f"{path}: no such file")
    handle = path.open(newline="", encoding="utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is not a column
    reader = csv.DictReader(handle)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = columns
    absent = [c for c in required if c not in columns]
    if absent:
        handle.close()
        raise FerlabError(
            f"{path}: missing column(s) {', '.join(absent)}; expected {', '.join(required)}, "
            f"found {', '.join(columns) or 'no header'}"
        )
    return reader, handle


def _read_pixels(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, 48, 48), emotion ids, Usage splits and the mask of well-formed rows."""
    reader, handle = _open_csv(path, ("emotion", "pixels"))
    images: list[np.ndarray] = []
    emotions: list[int] = []
    usages: list[str] = []
    ok: list[bool] = []
    bad_rows: list[str] = []
    with handle:  # type: ignore[attr-defined]
        for row_number, row in enumerate(
            tqdm(reader, desc=f"reading {path.name}", unit="row", leave=False, disable=None)
        ):
            try:
                pixels = np.array(row["pixels"].split(), dtype=np.int64)
                emotion = int(row["emotion"])
                if pixels.size != FER2013_SIDE**2 or not 0 <= emotion < len(FER2013):
                    raise ValueError
                if pixels.min() < 0 or pixels.max() > 255:
                    raise ValueError
            except (ValueError, AttributeError, TypeError):
                bad_rows.append(f"row {row_number}")
                pixels, emotion = np.zeros(FER2013_SIDE**2, dtype=np.int64), -1
            images.append(pixels.astype(np.uint8).reshape(FER2013_SIDE, FER2013_SIDE))
            emotions.append(emotion)
            usages.append(USAGE_SPLITS.get((row.get("Usage") or "").strip(), ""))
            ok.append(emotion >= 0)
    warn_skipped(bad_rows, "malformed csv row", path)
    if not images:
        raise FerlabError(f"{path}: the csv has a header but no rows")
    return np.stack(images), np.array(emotions), np.array(usages, dtype=object), np.array(ok)


def _read_ferplus_votes(path: Path, n_rows: int) -> np.ndarray:
    """(n_rows, 10) FER+ votes aligned with fer2013.csv rows; rows FER+ removed are all zero."""
    reader, handle = _open_csv(path, ("Usage", "Image name") + FERPLUS_VOTE_COLUMNS)
    with handle:  # type: ignore[attr-defined]
        rows = list(reader)
    if len(rows) != n_rows:
        raise FerlabError(
            f"{path} has {len(rows)} rows but the pixel csv has {n_rows}; "
            "fer2013new.csv must line up row by row with fer2013.csv"
        )
    votes = np.zeros((n_rows, len(FERPLUS_VOTE_COLUMNS)), dtype=np.int16)
    for i, row in enumerate(rows):
        if (row["Image name"] or "").strip():
            try:
                votes[i] = vote_counts([row[c] for c in FERPLUS_VOTE_COLUMNS])
            except (TypeError, ValueError):
                raise FerlabError(
                    f"{path}: row {i + 1}: vote counts must be whole numbers from 0 to {MAX_VOTES}"
                ) from None
    return votes


def read_fer2013_csv(path: Path, options: LoadOptions, ferplus_votes: Path | None = None) -> FaceDataset:
    """FER2013 with its 7 labels, or with FER+ majority labels and votes when given fer2013new.csv."""
    images, emotions, splits, ok = _read_pixels(path)
    label_set = FER2013
    labels = emotions
    votes = None
    if ferplus_votes is not None:
        votes = _read_ferplus_votes(ferplus_votes, len(images))
        ferplus_labels, keep = labels_from_votes(votes, options, ferplus_votes)
        ok = (votes.sum(axis=1) > 0) & keep & (emotions >= 0)
        label_set, labels = FERPLUS, ferplus_labels
    if not ok.any():
        raise FerlabError(f"{path}: no usable rows")
    rows = np.flatnonzero(ok)
    resized = (
        np.stack([resize(images[i][:, :, None], options.size) for i in rows])
        if options.size != FER2013_SIDE
        else images[rows][:, :, :, None]
    )
    if options.channels == 3:
        resized = np.repeat(resized, 3, axis=3)
    labels = labels[rows].astype(np.int64)
    return FaceDataset(
        images=np.ascontiguousarray(resized),
        labels=labels,
        splits=assign_missing_splits(labels, splits[rows], options),
        sources=np.array([f"{path.name}:{i}" for i in rows], dtype=str),
        label_set=label_set,
        original_sizes=np.full((len(rows), 2), FER2013_SIDE, dtype=np.int32),
        original_modes=np.full(len(rows), "L", dtype=str),
        votes=None if votes is None else votes[rows],
        origin=str(path),
    )
