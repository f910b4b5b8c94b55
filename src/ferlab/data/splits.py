"""Seeded stratified splits for sources that do not say which image is for what."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from ferlab.data.log import logger
from ferlab.data.options import LoadOptions


def _stratified_take(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified random `fraction` of `indices` (plain random if a class is too small)."""
    if fraction <= 0 or len(indices) < 2:
        return indices[:0]
    counts = np.bincount(labels[indices])
    stratify = labels[indices] if counts[counts > 0].min() >= 2 else None
    n_take = max(1, round(fraction * len(indices)))
    if stratify is not None and n_take < int((counts > 0).sum()):
        stratify = None
    _, taken = train_test_split(indices, test_size=n_take, random_state=seed, stratify=stratify)
    return np.sort(taken)


def assign_missing_splits(labels: np.ndarray, splits: np.ndarray, options: LoadOptions) -> np.ndarray:
    """Fill empty split entries, so every sample ends up in train, val or test.

    No split anywhere: a seeded stratified train / val / test split. Train without val:
    val is carved out of train, so model selection never touches the test set.
    """
    splits = np.array(splits, dtype=object)
    unassigned = np.flatnonzero(splits == "")
    if len(unassigned) and len(unassigned) < len(splits):
        splits[unassigned] = "train"  # files without a split among files with one are training data
    if len(unassigned) == len(splits):
        test = _stratified_take(unassigned, labels, options.test_fraction, options.seed)
        splits[test] = "test"
        rest = np.setdiff1d(unassigned, test)
        val_share = options.val_fraction / max(1e-9, 1 - options.test_fraction)
        splits[_stratified_take(rest, labels, val_share, options.seed + 1)] = "val"
        splits[splits == ""] = "train"
        logger.info("no splits in the source: made a seeded stratified train/val/test split (seed %d)", options.seed)
    elif not (splits == "val").any() and (splits == "train").any():
        train = np.flatnonzero(splits == "train")
        splits[_stratified_take(train, labels, options.val_fraction, options.seed)] = "val"
        logger.info(
            "no validation split in the source: took %.0f%% of train (seed %d)",
            100 * options.val_fraction,
            options.seed,
        )
    return splits.astype(str)
