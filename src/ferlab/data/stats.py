"""Descriptive statistics of a dataset: counts, imbalance, class weights, sizes, sharpness."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from ferlab.data.dataset import FaceDataset
from ferlab.data.markdown import markdown_table


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """sklearn's "balanced" weights n_samples / (n_classes * count); 0 for absent classes.

    Same formula as `sklearn.utils.class_weight.compute_class_weight("balanced")`, which
    the 5-class report used, but defined for every class of the label set: a class with no
    training sample gets weight 0 instead of an exception.
    """
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def sharpness(images: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each image (gray): low for blurred pictures."""
    gray = images[..., 0] if images.shape[-1] == 1 else images.mean(axis=-1).astype(np.uint8)
    return np.array([cv2.Laplacian(img, cv2.CV_64F).var() for img in gray])


@dataclass
class DatasetSummary:
    origin: str
    label_set: str
    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    imbalance_ratio: float
    class_weights: dict[str, float]
    sizes: list[tuple[str, int]]
    modes: list[tuple[str, int]]
    stored_shape: tuple[int, int, int]
    has_votes: bool

    def to_markdown(self) -> str:
        splits = list(self.counts)
        lines = [
            f"Dataset: `{self.origin}` — label set `{self.label_set}`, {len(self.classes)} classes",
            "",
        ]
        header = ["class", *splits, "total", "class weight"]
        rows: list[list[object]] = []
        for c in self.classes:
            counts = [self.counts[s][c] for s in splits]
            rows.append([c, *counts, sum(counts), f"{self.class_weights[c]:.3f}"])
        totals = [sum(self.counts[s].values()) for s in splits]
        rows.append(["**total**", *totals, sum(totals), ""])
        lines += [
            markdown_table(header, rows, right=range(1, len(header))),
            "",
            f"Imbalance ratio (largest / smallest training class): {self.imbalance_ratio:.1f}",
            "Class weights: balanced (n_samples / (n_classes * count)) on the training split.",
            "Image sizes (h x w): " + ", ".join(f"{s} ({n})" for s, n in self.sizes),
            "Image modes: " + ", ".join(f"{m} ({n})" for m, n in self.modes),
            f"Stored as: {self.stored_shape[0]}x{self.stored_shape[1]}, {self.stored_shape[2]} channel(s)"
            + ("; FER+ votes kept" if self.has_votes else ""),
        ]
        return "\n".join(lines)


def training_labels(dataset: FaceDataset) -> np.ndarray:
    """Labels of the training split (all labels when the dataset has no train split)."""
    mask = dataset.splits == "train"
    return dataset.labels[mask] if mask.any() else dataset.labels


def summarize(dataset: FaceDataset, top_sizes: int = 5) -> DatasetSummary:
    train = training_labels(dataset)
    counts = np.bincount(train, minlength=len(dataset.label_set))
    nonzero = counts[counts > 0]
    weights = balanced_class_weights(train, len(dataset.label_set))
    size_counts = Counter(f"{h}x{w}" for h, w in dataset.original_sizes.tolist())
    return DatasetSummary(
        origin=dataset.origin,
        label_set=dataset.label_set.name,
        classes=dataset.class_names,
        counts=dataset.class_counts(),
        imbalance_ratio=float(nonzero.max() / nonzero.min()),
        class_weights={c: float(w) for c, w in zip(dataset.class_names, weights)},
        sizes=size_counts.most_common(top_sizes),
        modes=Counter(dataset.original_modes.tolist()).most_common(),
        stored_shape=dataset.image_shape,
        has_votes=dataset.votes is not None,
    )
