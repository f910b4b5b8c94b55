"""The optimisation loop's parts: phases, optimiser and scheduler, one training epoch, evaluation.

An epoch's batch order, augmentation and mixup draw from generators seeded by (seed, phase,
epoch). With several processes every rank draws the same global order and augments the same
global batch, then trains on its own slice of it: the ranks' slices together are exactly the
single-process batch, whatever the number of processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from tqdm import tqdm

from ferlab.models.base import FerModel
from ferlab.models.batching import FORWARD_BATCH
from ferlab.training.augment import augment
from ferlab.training.config import ExperimentConfig
from ferlab.training.data import SplitTensors
from ferlab.training.device import Runtime
from ferlab.training.teacher import distilled_loss

EVAL_BATCH = FORWARD_BATCH


@dataclass
class Phase:
    name: str
    epochs: int
    lr: float
    patience: int
    unfreeze_top: int | None
    """None trains every layer; k trains the head and the top k backbone layers."""
    layer_count: str = "weights"
    """What a layer is for `unfreeze_top`: see `FerModel.unfreeze_top`'s count."""


@dataclass
class TrainState:
    phase_index: int = 0
    epoch_in_phase: int = 0
    bad_epochs: int = 0
    best_metric: float | None = None
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def phases_of(config: ExperimentConfig) -> list[Phase]:
    train = config.train
    if not config.finetune.enabled:
        return [Phase("train", train.epochs, train.lr, train.early_stopping_patience, None)]
    tune = config.finetune
    # The head phase counts layers the same way (it unfreezes none), so that a backbone Keras'
    # count does not apply to fails before the first epoch rather than after the whole phase.
    return [
        Phase("head", train.epochs, train.lr, train.early_stopping_patience, 0, tune.layer_count),
        Phase("finetune", tune.epochs, tune.lr, tune.early_stopping_patience, tune.unfreeze_top, tune.layer_count),
    ]


def epoch_generator(*parts: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0]))
    return generator


def unfreeze_for(model: FerModel, phase: Phase, config: ExperimentConfig) -> None:
    if phase.unfreeze_top is None:
        model.unfreeze_all()
        return
    model.unfreeze_top(phase.unfreeze_top, phase.layer_count)
    if config.finetune.freeze_batchnorm:
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.requires_grad_(False)
        model.train(model.training)  # frozen norm layers go to inference mode


def build_optimizer(
    model: torch.nn.Module, phase: Phase, config: ExperimentConfig
) -> tuple[torch.optim.Optimizer, Any]:
    """The phase's optimiser over the trainable parameters, and its scheduler (or None)."""
    params = [p for p in model.parameters() if p.requires_grad]
    train = config.train
    optimizer: torch.optim.Optimizer
    if train.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=phase.lr, weight_decay=train.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            params, lr=phase.lr, momentum=train.momentum, nesterov=True, weight_decay=train.weight_decay
        )
    if train.scheduler == "plateau":
        return optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min" if train.monitor == "val_loss" else "max",
            factor=train.plateau_factor,
            patience=train.plateau_patience,
            min_lr=train.min_lr,
        )
    if train.scheduler == "cosine":
        warmup, total = train.warmup_epochs, max(1, phase.epochs)

        def factor(epoch: int) -> float:  # a Python float: the checkpoint holds no NumPy scalars
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            progress = (epoch - warmup) / max(1, total - warmup)
            return float(0.5 * (1 + np.cos(np.pi * min(1.0, progress))))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, None


@dataclass
class EpochInputs:
    """What one training epoch reads besides the model and optimiser."""

    config: ExperimentConfig
    data: SplitTensors
    batch_size: int
    """The global batch; each of `runtime.world_size` ranks trains on batch_size / world_size of it."""
    runtime: Runtime
    class_weights: torch.Tensor | None = None
    teacher_probabilities: torch.Tensor | None = None
    scaler: torch.amp.GradScaler | None = None
    all_reduce: Callable[[list[float]], list[float]] | None = None
    """Sums per-rank counts over the ranks (None with one process)."""


def train_one_epoch(
    model: FerModel,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: EpochInputs,
    seed: tuple[int, ...],
) -> dict[str, float]:
    """One pass over the training split. `network` is what runs forward and backward (the model,
    or its DistributedDataParallel wrapper); `model` gives the input's normalisation."""
    config, data, runtime = inputs.config, inputs.data, inputs.runtime
    generator = epoch_generator(*seed)
    n = len(data.labels)
    if config.train.weighted_sampling:
        counts = torch.bincount(data.labels.cpu(), minlength=data.targets.shape[1]).float()
        order = torch.multinomial(1.0 / counts[data.labels.cpu()], n, replacement=True, generator=generator)
    else:
        order = torch.randperm(n, generator=generator)
    n_batches = n // inputs.batch_size  # drop_last: torch 2.13 CPU can crash on odd last batches
    local = inputs.batch_size // runtime.world_size
    mine = slice(runtime.rank * local, (runtime.rank + 1) * local)
    mix_rng = np.random.default_rng(list(seed))
    network.train()
    total_loss, correct, seen = 0.0, 0.0, 0.0
    second_correct, second_seen = 0.0, 0.0
    started = time.perf_counter()
    quiet = n_batches < 5 or not runtime.is_main
    bar = tqdm(range(n_batches), desc="train", unit="batch", leave=False, disable=True if quiet else None)
    for b in bar:
        index = order[b * inputs.batch_size : (b + 1) * inputs.batch_size]
        if data.images.device != index.device:
            index = index.to(data.images.device)
        raw, targets, labels = data.images[index], data.targets[index], data.labels[index]
        taught = inputs.teacher_probabilities[index] if inputs.teacher_probabilities is not None else None
        second = data.second_labels[index] if data.second_labels is not None else None
        if runtime.cuda and raw.device != runtime.device:  # data in pinned host memory: augment on the GPU
            raw, targets = raw.to(runtime.device, non_blocking=True), targets.to(runtime.device, non_blocking=True)
            taught = taught.to(runtime.device, non_blocking=True) if taught is not None else None
            second = second.to(runtime.device, non_blocking=True) if second is not None else None
        x = runtime.prepare(augment(raw, config.augment, generator), model.input_mean, model.input_std)
        lam, second_mixed = 1.0, second
        if config.train.mixup_alpha > 0:
            lam = float(mix_rng.beta(config.train.mixup_alpha, config.train.mixup_alpha))
            perm = torch.randperm(len(index), generator=generator).to(x.device)
            x = lam * x + (1 - lam) * x[perm]
            targets = lam * targets + (1 - lam) * targets[perm]
            if taught is not None:
                taught = lam * taught + (1 - lam) * taught[perm]
            second_mixed = second[perm] if second is not None else None
        if runtime.world_size > 1:
            x, targets, labels = x[mine], targets[mine], labels[mine]
            taught = taught[mine] if taught is not None else None
            if second is not None and second_mixed is not None:
                second, second_mixed = second[mine], second_mixed[mine]
        with runtime.autocast():
            if second is None:
                logits = network(x)
            else:
                logits, second_logits = network(x, both=True)
        loss = F.cross_entropy(
            logits.float(), targets, weight=inputs.class_weights, label_smoothing=config.train.label_smoothing
        )
        if taught is not None:
            loss = distilled_loss(loss, logits, taught, config.train)
        if second is not None and second_mixed is not None:
            second_loss = lam * masked_cross_entropy(second_logits, second)
            if lam < 1:
                second_loss = second_loss + (1 - lam) * masked_cross_entropy(second_logits, second_mixed)
            loss = loss + config.train.second_head_weight * second_loss
            known = second >= 0
            second_correct += int(((second_logits.argmax(1) == second) & known).sum())
            second_seen += int(known.sum())
        optimizer.zero_grad(set_to_none=True)
        if inputs.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            inputs.scaler.scale(loss).backward()
            inputs.scaler.step(optimizer)
            inputs.scaler.update()
        total_loss += loss.item() * len(labels)
        correct += int((logits.argmax(1) == labels.to(logits.device)).sum())
        seen += len(labels)
        rate = seen / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", img_s=f"{rate:.0f}")
    seconds = max(1e-9, time.perf_counter() - started)
    if inputs.all_reduce is not None:
        total_loss, correct, seen, second_correct, second_seen = inputs.all_reduce(
            [total_loss, correct, seen, second_correct, second_seen]
        )
    figures = {
        "train_loss": total_loss / max(1, seen),
        "train_accuracy": correct / max(1, seen),
        "images_per_s": seen / seconds,
    }
    if data.second_labels is not None:
        figures["train_second_accuracy"] = second_correct / max(1, second_seen)
    return figures


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the images with a label (>= 0; NO_LABEL is -1): a batch in which
    no image has one adds exactly 0 to the loss and its gradient."""
    known = labels >= 0
    losses = F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none")
    return (losses * known).sum() / known.sum().clamp(min=1)


@torch.no_grad()
def predict_logits(model: FerModel, images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """float32 logits on the CPU for uint8 images, in batches on the runtime's device."""
    model.eval()
    outputs = []
    for start in range(0, len(images), EVAL_BATCH):
        with runtime.autocast():
            x = runtime.prepare(images[start : start + EVAL_BATCH], model.input_mean, model.input_std)
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs)


def scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of CPU logits against labels."""
    labels = labels.cpu()
    predicted = logits.argmax(1).numpy()
    truth = labels.numpy()
    return {
        "loss": float(F.cross_entropy(logits, labels)),
        "accuracy": float((predicted == truth).mean()),
        "macro_f1": float(f1_score(truth, predicted, average="macro", labels=range(num_classes), zero_division=0)),
    }


def improved(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


def epoch_line(record: dict[str, Any], best: bool) -> str:
    """train.log's line for one epoch (a star marks a new best; a two-head run adds the second
    head's training accuracy)."""
    second = f"second_acc {record['train_second_accuracy']:.4f} " if "train_second_accuracy" in record else ""
    return (
        f"epoch {record['epoch']} [{record['phase']}] lr {record['lr']:.2e} loss {record['train_loss']:.4f} "
        f"acc {record['train_accuracy']:.4f} {second}val_loss {record['val_loss']:.4f} "
        f"val_acc {record['val_accuracy']:.4f} val_f1 {record['val_macro_f1']:.4f} "
        f"{record['images_per_s']:.0f} img/s {record['seconds']:.0f}s" + (" *" if best else "")
    )
