"""Finishing a run: from the best weights to the calibration temperature, metrics, curves and model.pt."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ferlab.data.dataset import FaceDataset
from ferlab.models.base import FerModel
from ferlab.models.bundle import ModelBundle, SecondHead, save_bundle, trainer_headline, training_metrics
from ferlab.models.calibration import expected_calibration_error, fit_temperature, softmax
from ferlab.models.pretrained import interpolate_with_start
from ferlab.models.prior import prior_of_targets
from ferlab.models.record import Training
from ferlab.training.augment import augment
from ferlab.training.config import ExperimentConfig
from ferlab.training.data import SplitTensors, TrainingData, split_tensors
from ferlab.training.device import Runtime, device_name
from ferlab.training.loop import TrainState, predict_logits, scores
from ferlab.training.run_folder import RunFolder

CALIBRATION_SEED = 7919
"""Offset of the augmentation draw that calibrates on augmented images from the run's seed:
its own stream, so the training batches are unchanged."""


def final_metrics(
    model: FerModel, config: ExperimentConfig, data: TrainingData, state: TrainState, runtime: Runtime
) -> tuple[dict[str, Any], float]:
    """metrics.json's figures for the (best) weights in `model`, and the temperature fitted on validation."""
    label_set = data.label_set
    tta = config.train.tta
    val_logits = served_logits(model, data.val.images, runtime, tta)
    val_labels = data.val.labels.cpu().numpy()
    fit_logits, fit_labels = val_logits.numpy(), val_labels
    if config.train.calibrate_on == "augmented":
        augmented = augmented_copy(data.val.images, config)
        fit_logits = np.concatenate([fit_logits, served_logits(model, augmented, runtime, tta).numpy()])
        fit_labels = np.concatenate([val_labels, val_labels])
    temperature = fit_temperature(fit_logits, fit_labels)
    metrics: dict[str, Any] = {
        "best_epoch": state.best_epoch,
        "epochs_run": len(state.history),
        "train_seconds": round(state.seconds, 1),
        "threads": torch.get_num_threads(),
        "precision": runtime.precision_label,
        "device": str(runtime.device),
        "device_name": device_name(runtime.device),
        "processes": runtime.world_size,
        "monitor": config.train.monitor,
        "label_set": label_set.name,
        "classes": list(label_set.classes),
        "temperature": temperature,
        "calibrated_on": config.train.calibrate_on,
        "tta": tta,
        "val": {
            **scores(val_logits, data.val.labels, len(label_set)),
            "samples": len(val_labels),
            "ece": expected_calibration_error(softmax(val_logits.numpy()), val_labels),
            "ece_calibrated": expected_calibration_error(softmax(val_logits.numpy(), temperature), val_labels),
        },
    }
    second = data.train.second_labels
    if second is not None and data.second_label_set is not None:
        metrics["second_head"] = {
            "label_set": data.second_label_set.name,
            "labels": config.data.second_labels,
            "weight": config.train.second_head_weight,
            "train_images": int((second >= 0).sum()),
        }
    if runtime.cuda:
        metrics["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(runtime.device) / 2**20, 1)
    if "test" in data.dataset.split_names():
        metrics["test"] = _test_scores(model, data.dataset, runtime, len(label_set), tta)
    return metrics, temperature


def augmented_copy(images: torch.Tensor, config: ExperimentConfig) -> torch.Tensor:
    """The images (uint8) under one draw of the training augmentation, seeded by the run's seed."""
    generator = torch.Generator().manual_seed(config.seed + CALIBRATION_SEED)  # on the CPU, as in training
    return augment(images, config.augment, generator).round().clamp(0, 255).to(torch.uint8)


def served_logits(model: FerModel, images: torch.Tensor, runtime: Runtime, tta: str) -> torch.Tensor:
    """Logits as the model will be served (`train.tta`): with flip, averaged with the mirror
    images' logits, as ferlab.inference.engine does."""
    logits = predict_logits(model, images, runtime)
    if tta == "flip":
        logits = (logits + predict_logits(model, images.flip(-1), runtime)) / 2
    return logits


def _test_scores(model: FerModel, dataset: FaceDataset, runtime: Runtime, classes: int, tta: str) -> dict[str, float]:
    test: SplitTensors = split_tensors(dataset, "test", soft=False)
    return scores(served_logits(model, test.images, runtime, tta), test.labels, classes)


def finished_bundle(
    model: FerModel,
    config: ExperimentConfig,
    data: TrainingData,
    temperature: float,
    metrics: dict[str, Any],
    runtime: Runtime,
) -> ModelBundle:
    """The model with its record: what it predicts, how it was trained and what the run measured."""
    train = config.train
    training = Training(
        data_format=config.data.format,
        split_seed=config.data.split_seed,
        val_clean=config.data.val_clean,
        teacher=train.teacher,
        distill_temperature=train.distill_temperature if train.teacher else None,
        distill_weight=train.distill_weight if train.teacher else None,
        precision=runtime.precision_label,
        device=str(runtime.device),
        device_name=metrics["device_name"],
        world_size=runtime.world_size,
        metrics=training_metrics(metrics),
    )
    prior = prior_of_targets(data.train.targets.cpu().numpy())
    bundle = ModelBundle.of(
        model,
        data.label_set,
        temperature,
        class_prior=tuple(prior),
        tta=train.tta,
        name=config.name,
        headline=trainer_headline(config.data.path, metrics),
        run=config.name,
        training_data=config.data.path,
        training=training,
    )
    bundle.second = second_head_of(model, data)
    return bundle


def second_head_of(model: FerModel, data: TrainingData) -> SecondHead | None:
    """A two-head model's second head as its bundle keeps it, with the prior of its labels."""
    second, labels = data.train.second_labels, data.second_label_set
    if model.second_head is None or second is None or labels is None:
        return None
    counts = torch.bincount(second[second >= 0].cpu(), minlength=len(labels)).double()
    prior = tuple(float(c) for c in counts / counts.sum())
    state = {k: v.detach().cpu() for k, v in model.second_head.state_dict().items()}
    return SecondHead(labels, state, prior)


def finish_run(
    model: FerModel,
    config: ExperimentConfig,
    data: TrainingData,
    state: TrainState,
    runtime: Runtime,
    folder: RunFolder,
) -> dict[str, Any]:
    """Fit the temperature on validation data, then write curves.png, model.pt and metrics.json
    (last: `train` takes it as the sign of a finished run). `model` holds the best weights; with
    `train.interpolate` below 1 they are first mixed with the starting weights (WiSE-FT)."""
    from ferlab.training.runs import plot_history

    if config.train.interpolate < 1:
        assert model.pretrained is not None  # build_config requires model.params.pretrained
        mixed = interpolate_with_start(model, model.pretrained, config.train.interpolate)
        folder.log(
            f"# final weights: {config.train.interpolate:g} x the best fine-tuned + "
            f"{1 - config.train.interpolate:g} x {model.pretrained} ({mixed} tensors mixed)"
        )
    metrics, temperature = final_metrics(model, config, data, state, runtime)
    if config.train.interpolate < 1:
        metrics["interpolate"] = config.train.interpolate
    if folder.writer:
        plot_history(state.history, folder.path / "curves.png")
        model = model.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        save_bundle(finished_bundle(model, config, data, temperature, metrics, runtime), folder.model)
        folder.write_metrics(metrics)
    return metrics
