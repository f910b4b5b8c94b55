"""FER+ vote counts: the authors' majority rule and the folder layout with label.csv files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ferlab.data.dataset import FERPLUS_VOTE_COLUMNS, FaceDataset
from ferlab.data.imageio import read_face_files
from ferlab.data.log import logger, warn_skipped
from ferlab.data.options import LoadOptions
from ferlab.errors import FerlabError
from ferlab.labels import FERPLUS

FERPLUS_SPLIT_FOLDERS: dict[str, str] = {
    "FER2013Train": "train",
    "FER2013Valid": "val",
    "FER2013Test": "test",
}
_N_EMOTIONS = len(FERPLUS)  # the vote columns after these are unknown and not-a-face


def majority_labels(votes: np.ndarray, policy: str = "strict") -> np.ndarray:
    """FER+ majority label per row of (N, 10) votes; -1 where the sample is to be dropped.

    "strict" follows the FER+ authors' `_process_data`: a column with a single vote is an
    outlier and is zeroed, then the top column must hold more than half of the remaining
    votes. "plurality" takes the top column as is. A winner of unknown or not-a-face, an
    all-zero row, or (strict) no majority gives -1.
    """
    votes = np.asarray(votes, dtype=np.int64)
    if policy == "strict":
        votes = np.where(votes <= 1, 0, votes)
    elif policy != "plurality":
        raise FerlabError(f"unknown FER+ majority policy {policy!r}; use 'strict' or 'plurality'")
    winner = votes.argmax(axis=1)
    top = votes.max(axis=1)
    total = votes.sum(axis=1)
    valid = (winner < _N_EMOTIONS) & (top > 0)
    if policy == "strict":
        valid &= top > 0.5 * total
    return np.where(valid, winner, -1)


def labels_from_votes(votes: np.ndarray, options: LoadOptions, origin: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Majority labels and the mask of samples kept, logging how many were dropped."""
    labels = majority_labels(votes, options.ferplus_majority)
    keep = labels >= 0
    dropped = int((~keep).sum())
    if dropped:
        logger.info(
            "dropped %d of %d FER+ samples in %s whose %s majority is unknown, not a face or unclear",
            dropped,
            len(labels),
            origin,
            options.ferplus_majority,
        )
    if not keep.any():
        raise FerlabError(f"{origin}: no FER+ sample has a usable majority label")
    return labels, keep


MAX_VOTES = 1000
"""More votes than any crowd labelled a face with (FER+ has 10): a larger count is a broken file."""


def vote_counts(values: list[str]) -> list[int]:
    """One face's vote counts from text; ValueError unless each is a whole number 0..MAX_VOTES."""
    counts = [float(v) for v in values]
    if not all(0 <= c <= MAX_VOTES and c == int(c) for c in counts):  # also refuses inf and nan
        raise ValueError(f"vote counts must be whole numbers from 0 to {MAX_VOTES}")
    return [int(c) for c in counts]


def _read_label_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """File names and (N, 10) votes of one FER+ label.csv (no header)."""
    names: list[str] = []
    votes: list[list[int]] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != 2 + len(FERPLUS_VOTE_COLUMNS):
                raise FerlabError(
                    f"{path}:{line_number}: expected file name, face box and "
                    f"{len(FERPLUS_VOTE_COLUMNS)} vote counts, got {len(row)} columns"
                )
            try:
                votes.append(vote_counts(row[2:]))
            except ValueError:
                raise FerlabError(
                    f"{path}:{line_number}: vote counts must be whole numbers from 0 to {MAX_VOTES}"
                ) from None
            names.append(row[0].strip())
    if not names:
        raise FerlabError(f"{path}: no rows")
    return names, np.array(votes, dtype=np.int16)


def split_folders(root: Path) -> list[tuple[Path, str]]:
    """The FER+ split folders (with label.csv) at or under `root`."""
    if (root / "label.csv").is_file():
        return [(root, FERPLUS_SPLIT_FOLDERS.get(root.name, ""))]
    found = [
        (root / name, split) for name, split in FERPLUS_SPLIT_FOLDERS.items() if (root / name / "label.csv").is_file()
    ]
    return found


def read_ferplus_folder(root: Path, options: LoadOptions) -> FaceDataset:
    from ferlab.data.splits import assign_missing_splits

    folders = split_folders(root)
    if not folders:
        raise FerlabError(f"{root}: no FER+ label.csv found (expected FER2013Train/label.csv, ...)")
    paths: list[Path] = []
    all_votes: list[np.ndarray] = []
    split_names: list[str] = []
    missing: list[str] = []
    for folder, split in folders:
        names, votes = _read_label_csv(folder / "label.csv")
        present = np.array([(folder / n).is_file() for n in names])
        missing += [f"{folder.name}/{n}" for n, p in zip(names, present) if not p]
        paths += [folder / n for n, p in zip(names, present) if p]
        all_votes.append(votes[present])
        split_names += [split] * int(present.sum())
    warn_skipped(missing, "image listed in label.csv but missing", root)
    votes = np.concatenate(all_votes)
    labels, keep = labels_from_votes(votes, options, root)
    kept_paths = [p for p, k in zip(paths, keep) if k]
    images, sizes, modes, ok = read_face_files(
        kept_paths, options.size, options.channels, root, describe=f"reading {root.name}"
    )
    if not ok.any():
        raise FerlabError(f"{root}: none of the FER+ images could be read")
    splits = np.array(split_names, dtype=object)[keep][ok]
    labels = labels[keep][ok]
    return FaceDataset(
        images=images,
        labels=labels,
        splits=assign_missing_splits(labels, splits, options),
        sources=np.array([p.relative_to(root).as_posix() for p in kept_paths], dtype=str)[ok],
        label_set=FERPLUS,
        original_sizes=sizes,
        original_modes=modes,
        votes=votes[keep][ok],
        origin=str(root),
    )
