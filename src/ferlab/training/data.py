"""Data preparation for training: the configured dataset, remapped, subsampled and deduplicated,
as uint8 tensors per split, with the class weights and the digests of the files it depends on."""

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

    def to(self, device: torch.device, non_blocking: bool = False) -> SplitTensors:
        return SplitTensors(
            *(t.to(device, non_blocking=non_blocking) for t in (self.images, self.labels, self.targets))
        )


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
    return TrainingData(dataset, train, val, weights, digests)


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
