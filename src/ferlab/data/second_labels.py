"""FER2013's own labels for FER+ images: the second label set of a two-head run.

FER+ relabelled the FER2013 pictures by crowd vote; FER2013's original 7-class labels are a
different reading of the same faces. The mapping file (`file,sharp_source` rows such as
`train/angry/Training_10118481.jpg,ferplus:fer0011724.png`, as `fer2013_train_to_ferplus.csv`
in the shared datasets) names, for each FER2013 Training file, whose class is in its path, the
FER+ image with the same pixels. Rows whose pixels came from elsewhere (`blank`, another copy)
give no label, and nor does a FER+ image that two FER2013 files (FER2013 holds duplicates) give
different classes: 42 in the shared mapping, whose two labels say the face is ambiguous.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

import numpy as np

from ferlab.data.log import logger
from ferlab.errors import FerlabError
from ferlab.labels import FER2013

SECOND_LABEL_SET = FER2013
"""The label set of the second head: FER2013's 7 classes in the csv's emotion-id order."""
FERPLUS_PREFIX = "ferplus:"
NO_LABEL = -1
"""A training image the mapping does not name (and every validation or test image)."""


def read_second_labels(path: Path) -> dict[str, int]:
    """FER+ file name (`fer0011724.png`) -> index of its FER2013 class in `SECOND_LABEL_SET`.

    One-line errors name the file and line of a missing column or an unknown class; a FER+
    image given two different classes is left out (logged)."""
    if not path.is_file():
        raise FerlabError(f"{path}: no such second-labels file (data.second_labels)")
    labels: dict[str, int] = {}
    conflicting: set[str] = set()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not {"file", "sharp_source"} <= set(reader.fieldnames or ()):
                raise FerlabError(f"{path}: expected the columns file,sharp_source, got {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                source = (row["sharp_source"] or "").strip()
                if not source.startswith(FERPLUS_PREFIX):
                    continue
                parts = PurePosixPath((row["file"] or "").strip()).parts
                if len(parts) < 2:
                    raise FerlabError(f"{path}:{line}: {row['file']!r} is not <split>/<class>/<file>")
                try:
                    label = SECOND_LABEL_SET.index(parts[-2])
                except FerlabError as exc:
                    raise FerlabError(f"{path}:{line}: {exc}") from None
                name = source.removeprefix(FERPLUS_PREFIX)
                if labels.setdefault(name, label) != label:
                    conflicting.add(name)
    except UnicodeDecodeError:
        raise FerlabError(f"{path}: not a UTF-8 csv file") from None
    for name in conflicting:
        del labels[name]
    if conflicting:
        logger.info("%s: %d FER+ images have two different FER2013 classes and get none", path, len(conflicting))
    if not labels:
        raise FerlabError(f"{path}: no row gives a FER+ image ({FERPLUS_PREFIX}<file>) one class")
    return labels


def second_labels_of(sources: np.ndarray, splits: np.ndarray, labels: dict[str, int]) -> np.ndarray:
    """Each image's second label (int64), by its file name; NO_LABEL outside the training split
    (validation and test images must not teach either head) and for images the mapping lacks."""
    found = [labels.get(PurePosixPath(str(s)).name, NO_LABEL) for s in sources]
    return np.where(splits == "train", np.array(found, dtype=np.int64), NO_LABEL)
