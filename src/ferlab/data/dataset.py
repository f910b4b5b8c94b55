"""The one in-memory dataset type every reader produces and every consumer takes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ferlab.errors import FerlabError
from ferlab.labels import LabelMapping, LabelSet

SPLITS: tuple[str, ...] = ("train", "val", "test")

FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)


@dataclass
class FaceDataset:
    """Decoded face images with labels, splits and where each image came from.

    images:   uint8 (N, H, W, C), C = 1 (gray) or 3 (RGB), all one size.
    labels:   int64 (N,), indices into `label_set.classes`.
    splits:   str (N,), one of SPLITS.
    sources:  str (N,), a stable id of each image (relative path or csv row).
    votes:    int (N, 10) FER+ annotator votes in FERPLUS_VOTE_COLUMNS order, or None.
    original_sizes: int (N, 2) height and width before resizing.
    original_modes: str (N,), Pillow mode of the file ("L", "RGB", ...).
    """

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    sources: np.ndarray
    label_set: LabelSet
    original_sizes: np.ndarray
    original_modes: np.ndarray
    votes: np.ndarray | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        n = len(self.images)
        if n == 0:
            raise FerlabError(f"dataset {self.origin or '(unnamed)'} has no images")
        for name in ("labels", "splits", "sources", "original_sizes", "original_modes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, images has {n}")
        if self.votes is not None and len(self.votes) != n:
            raise ValueError(f"votes has {len(self.votes)} rows, images has {n}")
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N,H,W,C), got {self.images.dtype} {self.images.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_set.classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def split_names(self) -> list[str]:
        """Splits present, in the canonical order."""
        present = set(self.splits.tolist())
        return [s for s in SPLITS if s in present]

    def subset(self, mask_or_index: np.ndarray) -> FaceDataset:
        """A new dataset with the selected rows (boolean mask or index array)."""
        pick = np.asarray(mask_or_index)
        return FaceDataset(
            images=self.images[pick],
            labels=self.labels[pick],
            splits=self.splits[pick],
            sources=self.sources[pick],
            label_set=self.label_set,
            original_sizes=self.original_sizes[pick],
            original_modes=self.original_modes[pick],
            votes=None if self.votes is None else self.votes[pick],
            origin=self.origin,
        )

    def split(self, name: str) -> FaceDataset:
        """The rows of one split; a clear error when the split is absent or empty."""
        if name not in SPLITS:
            raise FerlabError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        mask = self.splits == name
        if not mask.any():
            raise FerlabError(f"split {name!r} is empty in {self.origin}; present: {', '.join(self.split_names())}")
        return self.subset(mask)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: count}} with every class listed, zeros included."""
        counts: dict[str, dict[str, int]] = {}
        for split in self.split_names():
            tally = Counter(self.labels[self.splits == split].tolist())
            counts[split] = {c: tally.get(i, 0) for i, c in enumerate(self.class_names)}
        return counts

    def soft_targets(self) -> np.ndarray:
        """Per-sample probability over the classes: FER+ vote distribution, else one-hot.

        Votes for emotions outside the label set (and unknown / not-a-face) are left out
        and the rest renormalised, as the FER+ authors do for their probability targets.
        """
        n_classes = len(self.label_set)
        if self.votes is None:
            return np.eye(n_classes, dtype=np.float32)[self.labels]
        from ferlab.labels import FERPLUS, map_labels

        mapping = map_labels(FERPLUS, self.label_set)
        targets = np.zeros((len(self), n_classes), dtype=np.float32)
        for source_index, target_index in enumerate(mapping.index):
            if target_index >= 0:
                targets[:, target_index] += self.votes[:, source_index]
        totals = targets.sum(axis=1, keepdims=True)
        one_hot = np.eye(n_classes, dtype=np.float32)[self.labels]
        return np.where(totals > 0, targets / np.maximum(totals, 1), one_hot)

    def remap(self, mapping: LabelMapping) -> FaceDataset:
        """Relabel to `mapping.target`, dropping samples whose class the target lacks."""
        if mapping.source != self.label_set:
            raise FerlabError(f"mapping is from {mapping.source.name}, dataset labels are {self.label_set.name}")
        new_labels = np.asarray(mapping.index, dtype=np.int64)[self.labels]
        keep = new_labels >= 0
        if not keep.any():
            raise FerlabError(f"no sample of {self.origin} survives {mapping.describe()}")
        result = self.subset(keep)
        result.labels = new_labels[keep]
        result.label_set = mapping.target
        return result
