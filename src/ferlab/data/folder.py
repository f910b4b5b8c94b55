"""Folder-per-class trees: `root/<split>/<class>/*` or `root/<class>/*`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferlab.data.dataset import FaceDataset
from ferlab.data.imageio import image_extensions, read_face_files
from ferlab.data.log import logger
from ferlab.data.options import LoadOptions
from ferlab.data.paths import shown
from ferlab.data.splits import assign_missing_splits
from ferlab.errors import FerlabError
from ferlab.labels import canonical_emotion, label_set_for

_SPLIT_FOLDERS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}

# FER2013's file-name prefixes are its original Usage column.
_FER2013_PREFIXES: dict[str, str] = {"Training_": "train", "PublicTest_": "val", "PrivateTest_": "test"}


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_of(file_name: str, folder_split: str) -> str:
    for prefix, split in _FER2013_PREFIXES.items():
        if file_name.startswith(prefix):
            return split
    return folder_split


def list_folder(root: Path) -> list[tuple[Path, str, str]]:
    """(file, split or "", canonical class) for every image file under `root`."""
    top = _subfolders(root)
    if not top:
        raise FerlabError(f"{root}: no class folders found (expected root/<class>/* or root/<split>/<class>/*)")
    if all(p.name.lower() in _SPLIT_FOLDERS for p in top):
        class_folders = [(c, _SPLIT_FOLDERS[s.name.lower()]) for s in top for c in _subfolders(s)]
    else:
        class_folders = [(c, "") for c in top]
    extensions = image_extensions()
    entries: list[tuple[Path, str, str]] = []
    for folder, folder_split in class_folders:
        emotion = canonical_emotion(folder.name)  # errors listing the known names
        for path in sorted(folder.iterdir()):
            # A dangling symlink is listed too, so the reader reports it as unreadable.
            if (
                (path.is_file() or path.is_symlink())
                and not path.name.startswith(".")
                and path.suffix.lower() in extensions
            ):
                entries.append((path, _split_of(path.name, folder_split), emotion))
    if not entries:
        raise FerlabError(f"{root}: the class folders hold no image files")
    return entries


def read_folder(root: Path, options: LoadOptions) -> FaceDataset:
    entries = list_folder(root)
    label_set = label_set_for({emotion for _, _, emotion in entries})
    paths = [path for path, _, _ in entries]
    images, sizes, modes, ok = read_face_files(
        paths, options.size, options.channels, root, describe=f"reading {root.name}"
    )
    if not ok.any():
        raise FerlabError(f"{root}: none of the {len(paths)} image files could be read")
    labels = np.array([label_set.classes.index(e) for _, _, e in entries], dtype=np.int64)[ok]
    splits = np.array([s for _, s, _ in entries], dtype=object)[ok]
    splits = assign_missing_splits(labels, splits, options)
    # A name that is not UTF-8 is kept escaped (`shown`): every report and cache can hold it.
    sources = np.array([shown(p.relative_to(root).as_posix()) for p in paths], dtype=str)[ok]
    logger.info("read %d images of %d classes from %s", len(images), len(label_set), root)
    return FaceDataset(
        images=images,
        labels=labels,
        splits=splits,
        sources=sources,
        label_set=label_set,
        original_sizes=sizes,
        original_modes=modes,
        origin=str(root),
    )
