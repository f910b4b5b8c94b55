"""Data preparation for training: the configured dataset, remapped, subsampled and deduplicated,
as uint8 tensors per split, with the class weights, a two-head run's second labels and the
digests of the files it depends on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ferlab.data.audit import read_clean_list
from ferlab.data.dataset import FaceDataset
from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.data.second_labels import NO_LABEL, SECOND_LABEL_SET, read_second_labels, second_labels_of
from ferlab.data.stats import balanced_class_weights
from ferlab.data.tensors import to_uint8_tensor
from ferlab.errors import FerlabError
from ferlab.labels import LabelSet, get_label_set, map_labels
from ferlab.models.record import file_sha256
from ferlab.training.config import ExperimentConfig

logger = logging.getLogger("ferlab.training")


@dataclass
class SplitTensors:
    images: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    second_labels: torch.Tensor | None = None
    """A two-head run's second labels (int64, NO_LABEL where an image has none), or None."""

    def to(self, device: torch.device, non_blocking: bool = False) -> SplitTensors:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        second = move(self.second_labels) if self.second_labels is not None else None
        return SplitTensors(move(self.images), move(self.labels), move(self.targets), second)

    def pinned(self) -> SplitTensors:
        """The same tensors in pinned host memory (fast, asynchronous copies to a GPU)."""
        second = self.second_labels.pin_memory() if self.second_labels is not None else None
        return SplitTensors(self.images.pin_memory(), self.labels.pin_memory(), self.targets.pin_memory(), second)


@dataclass
class TrainingData:
    """Everything the loop reads: the dataset, its train and validation tensors, class weights."""

    dataset: FaceDataset
    train: SplitTensors
    val: SplitTensors
    class_weights: torch.Tensor | None
    input_digests: dict[str, str] = field(default_factory=dict)
    """sha256 of each file the targets or the selection depend on (clean validation list, teacher):
    a run never resumes on different inputs."""

    @property
    def label_set(self) -> LabelSet:
        return self.dataset.label_set

    @property
    def second_label_set(self) -> LabelSet | None:
        """What the second head predicts in a two-head run, else None."""
        return SECOND_LABEL_SET if self.train.second_labels is not None else None


def prepare_data(config: ExperimentConfig, input_size: int, channels: int) -> TrainingData:
    """Load the configured data at the model's input and make the tensors the loop trains on."""
    dataset = load_training_data(config, input_size, channels)
    soft = config.train.targets == "votes"
    train, val = split_tensors(dataset, "train", soft), split_tensors(dataset, "val", soft)
    weights = None
    if config.train.class_weights:
        weights = torch.tensor(
            balanced_class_weights(train.labels.numpy(), len(dataset.label_set)), dtype=torch.float32
        )
    digests = {"data.val_clean": file_sha256(Path(config.data.val_clean))} if config.data.val_clean else {}
    if config.data.second_labels:
        mapping = Path(config.data.second_labels)
        train.second_labels = torch.from_numpy(second_training_labels(dataset, mapping))
        digests["data.second_labels"] = file_sha256(mapping)
    return TrainingData(dataset, train, val, weights, digests)


def second_training_labels(dataset: FaceDataset, mapping: Path) -> np.ndarray:
    """The second labels of the training images, in the order of `split_tensors(dataset, "train")`."""
    part = dataset.split("train")
    labels = second_labels_of(part.sources, part.splits, read_second_labels(mapping))
    known = int((labels != NO_LABEL).sum())
    if known == 0:
        raise FerlabError(
            f"data.second_labels: none of the {len(labels)} training images is named in {mapping}; it maps "
            "FER2013 Training files to FER+ images, so train on the FER+ folder (data.path)"
        )
    logger.info(
        "second labels: %d of %d training images have a %s class (%s)",
        known,
        len(labels),
        SECOND_LABEL_SET.name,
        mapping,
    )
    return labels


def load_training_data(config: ExperimentConfig, input_size: int, channels: int) -> FaceDataset:
    """The configured dataset at the model's input size, remapped and subsampled as asked."""
    data = config.data
    options = LoadOptions(
        size=input_size,
        channels=channels,
        seed=data.split_seed,
        ferplus_majority=data.ferplus_majority,  # type: ignore[arg-type]
    )
    dataset = load_dataset(data.path, format=data.format, ferplus_labels=data.ferplus_labels, options=options)  # type: ignore[arg-type]
    if data.label_set and data.label_set != dataset.label_set.name:
        mapping = map_labels(dataset.label_set, get_label_set(data.label_set))
        logger.info("labels: %s", mapping.describe())
        dataset = dataset.remap(mapping)
    for split in ("train", "val"):
        dataset.split(split)  # a clear error when a split is missing
    if data.max_train_samples and data.max_train_samples < int((dataset.splits == "train").sum()):
        train_index = np.flatnonzero(dataset.splits == "train")
        _, counts = np.unique(dataset.labels[train_index], return_counts=True)
        if data.max_train_samples < max(2, len(counts)):
            raise FerlabError(
                f"config data.max_train_samples = {data.max_train_samples} is too small: the training "
                f"split has {len(counts)} classes, so keep at least {max(2, len(counts))} images"
            )
        # Stratified when every class can give images to both sides, else a plain random draw.
        stratify = counts.min() > 1 and len(train_index) - data.max_train_samples >= len(counts)
        keep, _ = train_test_split(
            train_index,
            train_size=data.max_train_samples,
            random_state=config.seed,
            stratify=dataset.labels[train_index] if stratify else None,
        )
        dataset = dataset.subset(np.sort(np.concatenate([keep, np.flatnonzero(dataset.splits != "train")])))
    if data.val_clean:
        dataset = _deduplicated_validation(dataset, Path(data.val_clean))
    if config.train.targets == "votes" and dataset.votes is None:
        raise FerlabError("train.targets=votes needs FER+ votes, and this dataset has none")
    return dataset


def _deduplicated_validation(dataset: FaceDataset, clean_list: Path) -> FaceDataset:
    """Drop the validation images that are not in the audit's clean list."""
    is_val = dataset.splits == "val"
    keep = np.isin(dataset.sources, list(read_clean_list(clean_list)))
    if (keep & (dataset.splits == "train")).any():
        raise FerlabError(
            f"data.val_clean: {clean_list} lists training images, so it was made for another split "
            "of this data (a different data.split_seed?); audit again with the same splits"
        )
    kept = int((keep & is_val).sum())
    if kept == 0:
        raise FerlabError(
            f"data.val_clean: none of the validation images is in {clean_list}; "
            "make it with ferlab data audit DATA --query-split val --write-clean-split FILE"
        )
    logger.info("validation: %d of %d images have no near-copy in training (%s)", kept, int(is_val.sum()), clean_list)
    return dataset.subset(~is_val | keep)


def split_tensors(dataset: FaceDataset, split: str, soft: bool) -> SplitTensors:
    part = dataset.split(split)
    targets = part.soft_targets() if soft else np.eye(len(part.label_set), dtype=np.float32)[part.labels]
    return SplitTensors(to_uint8_tensor(part.images), torch.from_numpy(part.labels), torch.from_numpy(targets))


def global_batch(train_images: int, batch_size: int, processes: int) -> int:
    """`train.batch_size`, at most the training split (even: see the drop_last note in `loop`); it is
    the batch of all processes together, so it must split evenly over them."""
    batch = min(batch_size, train_images // 2 * 2)
    if batch < 2:
        raise FerlabError("the training split needs at least 2 images")
    if batch % processes:
        raise FerlabError(
            f"train.batch_size {batch} is the global batch and does not split evenly over "
            f"{processes} processes; pick a multiple of {processes}"
        )
    return batch
