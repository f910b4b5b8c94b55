"""`load_dataset`: recognise a dataset's layout, read it once, and cache the decoded arrays.

The cache lives outside the user's folder (FERLAB_CACHE_DIR, default ~/.cache/ferlab) and
is keyed by the source's path, file sizes and modification times and the load options, so
an edited dataset is read again and an unchanged one loads in well under a second.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from ferlab.data.cache import CACHE_ENV, cache_root
from ferlab.data.dataset import FaceDataset
from ferlab.data.fer_csv import read_fer2013_csv
from ferlab.data.ferplus import read_ferplus_folder, split_folders
from ferlab.data.folder import read_folder
from ferlab.data.log import logger
from ferlab.data.options import LoadOptions
from ferlab.errors import FerlabError
from ferlab.labels import LabelSet

DatasetFormat = Literal["auto", "folder", "fer2013-csv", "ferplus-folder"]
_CACHE_VERSION = 1


def cache_dir() -> Path:
    return cache_root() / "datasets"


def detect_format(path: Path) -> DatasetFormat:
    """Which reader a path needs, from its type and content."""
    if not path.exists():
        raise FerlabError(f"{path}: no such file or folder")
    if path.is_dir():
        return "ferplus-folder" if split_folders(path) else "folder"
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
        columns = {c.strip() for c in header}
        if "pixels" in columns:
            return "fer2013-csv"
        if "Image name" in columns:
            raise FerlabError(
                f"{path} holds FER+ votes but no pixels: load fer2013.csv and pass this file "
                "as its FER+ labels (--ferplus-labels)"
            )
        raise FerlabError(
            f"{path}: not a FER2013 csv (needs columns emotion,pixels[,Usage]; found {', '.join(header) or 'none'})"
        )
    raise FerlabError(f"{path}: not a dataset (expected a folder of class folders, a FER+ folder or a .csv)")


def _fingerprint(paths: list[Path]) -> str:
    """Hash of every file's relative path, size and mtime under the given files/folders.

    Names are hashed as the OS's bytes, so a name that is not UTF-8 is hashed too (the same
    bytes as before for every UTF-8 name: existing cache keys stay valid)."""
    digest = hashlib.sha256()
    for top in (p.resolve() for p in paths):  # one key for relative and absolute spellings
        digest.update(os.fsencode(top))
        if top.is_file():
            stat = top.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            continue
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                entry = os.fsencode(os.path.join(folder, name))
                try:
                    stat = os.stat(entry)
                except OSError:  # a dangling symlink, a file deleted meanwhile: hashed as missing
                    digest.update(entry + b":missing\n")
                    continue
                digest.update(entry + f":{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_key(fmt: str, sources: list[Path], options: LoadOptions) -> str:
    spec = json.dumps(
        {"v": _CACHE_VERSION, "format": fmt, "files": _fingerprint(sources), "options": options.as_dict()},
        sort_keys=True,
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:24]


def _save(dataset: FaceDataset, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "images": dataset.images,
        "labels": dataset.labels,
        "splits": dataset.splits.astype(str),
        "sources": dataset.sources.astype(str),
        "original_sizes": dataset.original_sizes,
        "original_modes": dataset.original_modes.astype(str),
        "label_set": np.array([dataset.label_set.name, *dataset.label_set.classes]),
        "origin": np.array(dataset.origin),
    }
    if dataset.votes is not None:
        arrays["votes"] = dataset.votes
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as handle:
        np.savez(handle, allow_pickle=False, **arrays)  # _load reads with allow_pickle=False too
    os.replace(handle.name, target)  # atomic: a killed run never leaves half a cache file


def _load(path: Path) -> FaceDataset:
    with np.load(path, allow_pickle=False) as data:
        name, *classes = data["label_set"].tolist()
        return FaceDataset(
            images=data["images"],
            labels=data["labels"],
            splits=data["splits"],
            sources=data["sources"],
            label_set=LabelSet(name, tuple(classes)),
            original_sizes=data["original_sizes"],
            original_modes=data["original_modes"],
            votes=data["votes"] if "votes" in data.files else None,
            origin=str(data["origin"]),
        )


def load_dataset(
    path: str | Path,
    *,
    format: DatasetFormat = "auto",
    ferplus_labels: str | Path | None = None,
    options: LoadOptions | None = None,
    use_cache: bool = True,
) -> FaceDataset:
    """Read a dataset in any supported layout (docs/data.md) into a FaceDataset.

    `ferplus_labels` is FER+'s fer2013new.csv, used with a fer2013.csv to get FER+ labels.
    """
    path = Path(path).expanduser()
    options = options or LoadOptions()
    fmt = detect_format(path) if format == "auto" else format
    votes_path = Path(ferplus_labels).expanduser() if ferplus_labels else None
    if votes_path is not None:
        if fmt != "fer2013-csv":
            raise FerlabError("--ferplus-labels goes with a fer2013.csv pixel file")
        if not votes_path.is_file():
            raise FerlabError(f"{votes_path}: no such file")
    sources = [path] + ([votes_path] if votes_path else [])
    cache_file = cache_dir() / f"{_cache_key(fmt, sources, options)}.npz"
    if use_cache and cache_file.is_file():
        try:
            return _load(cache_file)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable dataset cache %s (%s)", cache_file, exc)
    if fmt == "folder":
        dataset = read_folder(path, options)
    elif fmt == "ferplus-folder":
        dataset = read_ferplus_folder(path, options)
    elif fmt == "fer2013-csv":
        dataset = read_fer2013_csv(path, options, votes_path)
    else:
        raise FerlabError(f"unknown dataset format {fmt!r}")
    if use_cache:
        try:
            _save(dataset, cache_file)
        except OSError as exc:
            logger.warning(
                "could not write the dataset cache %s (%s); point %s at a writable folder to keep one",
                cache_file,
                exc.strerror or exc,
                CACHE_ENV,
            )
    return dataset
