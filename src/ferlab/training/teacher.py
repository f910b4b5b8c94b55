"""Distillation targets: a trained teacher's softened predictions on the training images, and
the loss that mixes them with the labels (Hinton et al.)."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from ferlab.data.imageio import resize
from ferlab.errors import FerlabError
from ferlab.labels import LabelSet
from ferlab.models.base import FerModel
from ferlab.models.bundle import ModelBundle, load_bundle
from ferlab.models.record import file_sha256
from ferlab.models.shipped import member_references, resolve
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
    are averaged with its mirror image's. A teacher reads the faces at its own input size
    (resized from the student's as the data loader resizes). An ensemble teacher (`A+B`)
    teaches the average of its members' calibrated probabilities, as served with `--prior
    train` (the class prior is left as trained, as in the labels); a single teacher teaches its
    own logits.
    """
    assert config.train.teacher is not None
    teachers, digests = [], []
    for reference in member_references(config.train.teacher):
        weights = resolve(reference).weights_file()
        teachers.append(checked_teacher(load_bundle(weights), str(reference), config, label_set, student))
        digests.append(file_sha256(weights))
    if len(teachers) == 1:
        logits = teacher_logits(teachers[0], images, runtime)
    else:
        calibrated = [
            torch.softmax(teacher_logits(teacher, images, runtime) / teacher.record.temperature, dim=1)
            for teacher in teachers
        ]
        logits = torch.log(torch.stack(calibrated).mean(0))
    probabilities = torch.softmax(logits / config.train.distill_temperature, dim=1)
    return probabilities.to(images.device), "+".join(digests)


def checked_teacher(
    teacher: ModelBundle, reference: str, config: ExperimentConfig, label_set: LabelSet, student: FerModel
) -> ModelBundle:
    """The teacher, once it is known to predict the student's classes from the same kind of face."""
    record = teacher.record
    if record.training_data not in (None, config.data.path):
        logger.warning(
            "the teacher %s was trained on %s, this run on %s: make sure it never saw this run's "
            "validation or test images",
            reference,
            record.training_data,
            config.data.path,
        )
    if record.classes != label_set.classes:
        raise FerlabError(
            f"the teacher {reference} predicts {', '.join(record.classes)}, the training data "
            f"has {', '.join(label_set.classes)}: distillation needs the same classes in the same order"
        )
    if record.in_channels != student.in_channels:
        raise FerlabError(
            f"the teacher {reference} takes {record.in_channels}-channel faces, the student "
            f"{student.in_channels}-channel ones: give the student the teacher's in_channels"
        )
    return teacher


def teacher_logits(teacher: ModelBundle, images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """One teacher's logits on uint8 (N, C, H, W) images, at its input size and as it is served."""
    record = teacher.record
    model = teacher.model.eval().to(runtime.device)
    if runtime.channels_last:  # as the student runs: on this CPU 1.4x faster than NCHW for ResNet-9
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    logits = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = resized(images[start : start + EVAL_BATCH], record.input_size)
        batch = runtime.prepare(batch, record.input_mean, record.input_std)
        with runtime.autocast():
            batch_logits = model(batch).float()
            if record.tta == "flip":
                batch_logits = (batch_logits + model(batch.flip(-1)).float()) / 2
            logits.append(batch_logits)
    return torch.cat(logits)


def resized(batch: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) faces at `size` x `size`, resized as the data loader resizes."""
    if batch.shape[-1] == size and batch.shape[-2] == size:
        return batch
    faces = np.ascontiguousarray(batch.permute(0, 2, 3, 1).cpu().numpy())
    return torch.from_numpy(np.stack([resize(face, size) for face in faces])).permute(0, 3, 1, 2)


def distilled_loss(
    label_loss: torch.Tensor, logits: torch.Tensor, taught: torch.Tensor, train: TrainConfig
) -> torch.Tensor:
    """Hinton et al.'s mix: labels plus KL to the teacher at temperature T, scaled by T²
    so the two terms keep comparable gradients whatever T is."""
    t = train.distill_temperature
    imitation = F.kl_div(F.log_softmax(logits.float() / t, dim=1), taught, reduction="batchmean") * t * t
    return (1 - train.distill_weight) * label_loss + train.distill_weight * imitation
