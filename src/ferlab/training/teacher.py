"""Distillation targets: a trained teacher's softened predictions on the training images, and
the loss that mixes them with the labels (Hinton et al.)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ferlab.errors import FerlabError
from ferlab.labels import LabelSet
from ferlab.models.base import FerModel
from ferlab.models.bundle import load_bundle
from ferlab.models.record import file_sha256
from ferlab.models.shipped import bundle_file
from ferlab.training.config import ExperimentConfig, TrainConfig
from ferlab.training.device import Runtime

logger = logging.getLogger("ferlab.training")

EVAL_BATCH = 256


@torch.no_grad()
def teacher_probabilities(
    config: ExperimentConfig, label_set: LabelSet, student: FerModel, images: torch.Tensor, runtime: Runtime
) -> tuple[torch.Tensor, str]:
    """The teacher's softened predictions on the un-augmented training images, and the sha256 of
    its file (which goes into each checkpoint, so a run never resumes with another teacher).

    Computed when the run starts or resumes (offline distillation): the teacher costs one
    forward pass instead of one per epoch, which makes a slow teacher affordable on a CPU.
    A teacher served with flips (`train.tta: flip`) teaches as served: each image's logits
    are averaged with its mirror image's.
    """
    teacher_path = config.train.teacher
    assert teacher_path is not None
    teacher = load_bundle(teacher_path)
    digest = file_sha256(bundle_file(teacher_path))
    if teacher.record.training_data not in (None, config.data.path):
        logger.warning(
            "the teacher %s was trained on %s, this run on %s: make sure it never saw this run's "
            "validation or test images",
            teacher_path,
            teacher.record.training_data,
            config.data.path,
        )
    if teacher.record.classes != label_set.classes:
        raise FerlabError(
            f"the teacher {teacher_path} predicts {', '.join(teacher.record.classes)}, the training data "
            f"has {', '.join(label_set.classes)}: distillation needs the same classes in the same order"
        )
    record = teacher.record
    if (record.input_size, record.in_channels) != (student.input_size, student.in_channels):
        raise FerlabError(
            f"the teacher {teacher_path} takes {record.in_channels}x{record.input_size}x{record.input_size} faces, "
            f"the student {student.in_channels}x{student.input_size}x{student.input_size}: give the student "
            "the teacher's input_size and in_channels"
        )
    model = teacher.model.eval().to(runtime.device)
    if runtime.channels_last:  # as the student runs: on this CPU 1.4x faster than NCHW for ResNet-9
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    logits = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = runtime.prepare(images[start : start + EVAL_BATCH], record.input_mean, record.input_std)
        with runtime.autocast():
            batch_logits = model(batch).float()
            if teacher.record.tta == "flip":
                batch_logits = (batch_logits + model(batch.flip(-1)).float()) / 2
            logits.append(batch_logits)
    probabilities = torch.softmax(torch.cat(logits) / config.train.distill_temperature, dim=1)
    return probabilities.to(images.device), digest


def distilled_loss(
    label_loss: torch.Tensor, logits: torch.Tensor, taught: torch.Tensor, train: TrainConfig
) -> torch.Tensor:
    """Hinton et al.'s mix: labels plus KL to the teacher at temperature T, scaled by T²
    so the two terms keep comparable gradients whatever T is."""
    t = train.distill_temperature
    imitation = F.kl_div(F.log_softmax(logits.float() / t, dim=1), taught, reduction="batchmean") * t * t
    return (1 - train.distill_weight) * label_loss + train.distill_weight * imitation
