"""The training engine: one loop for every recipe of both reports, resumable at any epoch.

Every epoch ends with an atomic checkpoint (weights, optimiser, scheduler, RNG states,
early-stopping state, history). Batch order, augmentation and mixup draw from generators
seeded by (seed, phase, epoch), and the global torch RNG state (dropout) is checkpointed,
so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from ferlab.data.audit import read_clean_list
from ferlab.data.dataset import FaceDataset
from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.data.stats import balanced_class_weights
from ferlab.data.tensors import normalize, to_uint8_tensor
from ferlab.errors import FerlabError
from ferlab.models.calibration import expected_calibration_error, fit_temperature, softmax
from ferlab.labels import get_label_set, map_labels
from ferlab.models.base import FerModel, summary
from ferlab.models.bundle import (
    ModelBundle,
    atomic_save,
    bundle_file,
    load_bundle,
    load_torch_file,
    remove_stale_temporaries,
    save_bundle,
)
from ferlab.models.prior import prior_of_targets
from ferlab.models.registry import create_model
from ferlab.training.augment import augment
from ferlab.training.config import ExperimentConfig, build_config, read_config_file

logger = logging.getLogger("ferlab.training")

EVAL_BATCH = 256


class TrainingInterrupted(FerlabError):
    """Ctrl-C during training: the last finished epoch is saved and can be resumed."""


@dataclass
class Phase:
    name: str
    epochs: int
    lr: float
    patience: int
    unfreeze_top: int | None
    """None trains every layer; k trains the head and the top k backbone layers."""


@dataclass
class TrainState:
    phase_index: int = 0
    epoch_in_phase: int = 0
    bad_epochs: int = 0
    best_metric: float | None = None
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class SplitTensors:
    images: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor


def phases_of(config: ExperimentConfig) -> list[Phase]:
    train = config.train
    if not config.finetune.enabled:
        return [Phase("train", train.epochs, train.lr, train.early_stopping_patience, None)]
    tune = config.finetune
    return [
        Phase("head", train.epochs, train.lr, train.early_stopping_patience, 0),
        Phase("finetune", tune.epochs, tune.lr, tune.early_stopping_patience, tune.unfreeze_top),
    ]


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively. Where it only emulates it (AVX2 machines,
    e.g. the project's 2-core AMD EPYC), autocast made ResNet-9 20x and EfficientNet-Lite0 7x
    slower than float32; with AVX512-BF16 or AMX it about doubles training speed."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _generator(*parts: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0]))
    return generator


class Trainer:
    """Trains one experiment into its run folder, from scratch or from its last checkpoint."""

    def __init__(self, config: ExperimentConfig, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        train = config.train
        torch.set_num_threads(train.threads or os.cpu_count() or 1)
        seed_everything(config.seed)
        self.bf16 = train.bf16 and native_bf16()
        if train.bf16 and not self.bf16:
            logger.warning(
                "train.bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), where bf16 autocast "
                "runs 7-20x slower than float32; training in float32"
            )
        try:  # before any data is loaded: a bad model option fails in a second, not after the decoding
            probe = create_model(config.model.name, 2, **_without_pretrained(config.model.params))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise FerlabError(
                f"config model.params {config.model.params} do not build a {config.model.name} "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
            ) from None
        self.dataset = load_training_data(config, probe.spec.input_size, probe.spec.in_channels)
        self.label_set = self.dataset.label_set
        self.model: FerModel = create_model(config.model.name, len(self.label_set), **config.model.params)
        soft = train.targets == "votes"
        self.train_data = split_tensors(self.dataset, "train", soft)
        self.val_data = split_tensors(self.dataset, "val", soft)
        # sha256 of each file the targets or the selection depend on (teacher, clean
        # validation list): a run never resumes on different inputs.
        self.input_digests: dict[str, str] = {}
        if config.data.val_clean:
            self.input_digests["data.val_clean"] = _sha256(Path(config.data.val_clean))
        self.teacher_probabilities = self._teacher_probabilities(train.teacher) if train.teacher else None
        self.class_weights = (
            torch.tensor(
                balanced_class_weights(self.train_data.labels.numpy(), len(self.label_set)), dtype=torch.float32
            )
            if train.class_weights
            else None
        )
        self.batch_size = min(train.batch_size, len(self.train_data.labels) // 2 * 2)
        if self.batch_size < 2:
            raise FerlabError("the training split needs at least 2 images")
        if train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.phases = phases_of(config)
        self.state = TrainState()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self._pending_optimizer: tuple[dict[str, Any], dict[str, Any] | None] | None = None

    @torch.no_grad()
    def _teacher_probabilities(self, teacher_path: str) -> torch.Tensor:
        """The teacher's softened predictions on the un-augmented training images.

        Computed when the run starts or resumes (offline distillation): the teacher costs
        one forward pass instead of one per epoch, which makes a slow teacher affordable on
        a CPU. The teacher file's digest goes into each checkpoint (`input_digests`).
        """
        train = self.config.train
        teacher = load_bundle(teacher_path)
        self.input_digests["train.teacher"] = _sha256(bundle_file(teacher_path))
        if teacher.info.get("data") not in (None, self.config.data.path):
            logger.warning(
                "the teacher %s was trained on %s, this run on %s: make sure it never saw this run's "
                "validation or test images",
                teacher_path,
                teacher.info.get("data"),
                self.config.data.path,
            )
        if teacher.label_set.classes != self.label_set.classes:
            raise FerlabError(
                f"the teacher {teacher_path} predicts {', '.join(teacher.label_set.classes)}, the training data "
                f"has {', '.join(self.label_set.classes)}: distillation needs the same classes in the same order"
            )
        spec, student = teacher.spec, self.model.spec
        if (spec.input_size, spec.in_channels) != (student.input_size, student.in_channels):
            raise FerlabError(
                f"the teacher {teacher_path} takes {spec.in_channels}x{spec.input_size}x{spec.input_size} faces, "
                f"the student {student.in_channels}x{student.input_size}x{student.input_size}: give the student "
                "the teacher's input_size and in_channels"
            )
        model = teacher.model.eval()
        images = self.train_data.images
        logits = []
        for start in range(0, len(images), EVAL_BATCH):
            batch = normalize(images[start : start + EVAL_BATCH], spec.input_mean, spec.input_std)
            with self._autocast():
                logits.append(model(batch).float())
        return torch.softmax(torch.cat(logits) / train.distill_temperature, dim=1)

    # -- run folder -------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    def _log(self, line: str) -> None:
        with (self.run_dir / "train.log").open("a") as handle:
            handle.write(line + "\n")

    def write_run_header(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        counts = self.dataset.class_counts()
        text = summary(self.model) + "\n\nData: " + json.dumps(counts)
        (self.run_dir / "summary.txt").write_text(text + "\n")

    # -- optimisation -----------------------------------------------------------------

    def _begin_phase(self, phase: Phase) -> None:
        if phase.unfreeze_top is None:
            self.model.unfreeze_all()
        else:
            self.model.unfreeze_top(phase.unfreeze_top)
            if self.config.finetune.freeze_batchnorm:
                for module in self.model.backbone.modules():
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.requires_grad_(False)
                self.model.train(self.model.training)  # frozen norm layers go to inference mode
        params = [p for p in self.model.parameters() if p.requires_grad]
        train = self.config.train
        if train.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=phase.lr, weight_decay=train.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                params, lr=phase.lr, momentum=train.momentum, nesterov=True, weight_decay=train.weight_decay
            )
        if train.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="min" if train.monitor == "val_loss" else "max",
                factor=train.plateau_factor,
                patience=train.plateau_patience,
                min_lr=train.min_lr,
            )
        elif train.scheduler == "cosine":
            warmup, total = train.warmup_epochs, max(1, phase.epochs)

            def factor(epoch: int) -> float:  # a Python float: the checkpoint holds no NumPy scalars
                if epoch < warmup:
                    return (epoch + 1) / (warmup + 1)
                progress = (epoch - warmup) / max(1, total - warmup)
                return float(0.5 * (1 + np.cos(np.pi * min(1.0, progress))))

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        else:
            self.scheduler = None

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(), targets, weight=self.class_weights, label_smoothing=self.config.train.label_smoothing
        )

    def _distilled(self, label_loss: torch.Tensor, logits: torch.Tensor, taught: torch.Tensor) -> torch.Tensor:
        """Hinton et al.'s mix: labels plus KL to the teacher at temperature T, scaled by T²
        so the two terms keep comparable gradients whatever T is."""
        train = self.config.train
        t = train.distill_temperature
        imitation = F.kl_div(F.log_softmax(logits.float() / t, dim=1), taught, reduction="batchmean") * t * t
        return (1 - train.distill_weight) * label_loss + train.distill_weight * imitation

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        spec = self.model.spec
        x = normalize(batch, spec.input_mean, spec.input_std)
        return x.contiguous(memory_format=torch.channels_last) if self.config.train.channels_last else x

    def _autocast(self) -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def train_epoch(self, epoch_seed: tuple[int, ...]) -> dict[str, float]:
        assert self.optimizer is not None
        config, data = self.config, self.train_data
        generator = _generator(*epoch_seed)
        n = len(data.labels)
        if config.train.weighted_sampling:
            counts = torch.bincount(data.labels, minlength=len(self.label_set)).float()
            order = torch.multinomial(1.0 / counts[data.labels], n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator)
        n_batches = n // self.batch_size  # drop_last: torch 2.13 CPU can crash on odd last batches
        mix_rng = np.random.default_rng(list(epoch_seed))
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        started = time.perf_counter()
        bar = tqdm(range(n_batches), desc="train", unit="batch", leave=False, disable=True if n_batches < 5 else None)
        for b in bar:
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            images = augment(data.images[index], config.augment, generator)
            x, targets = self._prepare(images), data.targets[index]
            taught = self.teacher_probabilities[index] if self.teacher_probabilities is not None else None
            if config.train.mixup_alpha > 0:
                lam = float(mix_rng.beta(config.train.mixup_alpha, config.train.mixup_alpha))
                perm = torch.randperm(len(index), generator=generator)
                x = lam * x + (1 - lam) * x[perm]
                targets = lam * targets + (1 - lam) * targets[perm]
                if taught is not None:
                    taught = lam * taught + (1 - lam) * taught[perm]
            with self._autocast():
                logits = self.model(x)
            loss = self._loss(logits, targets)
            if taught is not None:
                loss = self._distilled(loss, logits, taught)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.item() * len(index)
            correct += int((logits.argmax(1) == data.labels[index]).sum())
            seen += len(index)
            rate = seen / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", img_s=f"{rate:.0f}")
        return {
            "train_loss": total_loss / max(1, seen),
            "train_accuracy": correct / max(1, seen),
            "images_per_s": seen / max(1e-9, time.perf_counter() - started),
        }

    @torch.no_grad()
    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        outputs = []
        for start in range(0, len(images), EVAL_BATCH):
            with self._autocast():
                outputs.append(self.model(self._prepare(images[start : start + EVAL_BATCH])).float())
        return torch.cat(outputs)

    def evaluate(self, data: SplitTensors, logits: torch.Tensor | None = None) -> dict[str, float]:
        logits = self.predict_logits(data.images) if logits is None else logits
        predicted = logits.argmax(1).numpy()
        labels = data.labels.numpy()
        return {
            "loss": float(F.cross_entropy(logits, data.labels)),
            "accuracy": float((predicted == labels).mean()),
            "macro_f1": float(
                f1_score(labels, predicted, average="macro", labels=range(len(self.label_set)), zero_division=0)
            ),
        }

    # -- checkpoints ------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """last.pt: tensors and plain Python values only, so it loads with weights_only=True."""
        assert self.optimizer is not None
        atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "state": self.state.__dict__,
                "rng": rng_states(),
                "input_digests": self.input_digests,
            },
            self.checkpoint_path,
        )

    def restore_checkpoint(self) -> None:
        """Load last.pt: weights and bookkeeping now, optimiser state when its phase begins.

        Loaded with weights_only=True: a checkpoint is data, never code, whoever wrote the
        run folder. Anything else, or a damaged file, is a one-line FerlabError.
        """
        if not self.checkpoint_path.is_file():
            raise FerlabError(f"{self.run_dir}: no checkpoint (last.pt) to resume from")
        saved = load_torch_file(self.checkpoint_path, "ferlab checkpoint", allow=_OLD_NUMPY_RNG_TYPES)
        try:
            self._restore(saved)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            raise FerlabError(
                f"{self.checkpoint_path}: not a checkpoint of this run ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:160]}); start a new run or put the original last.pt back"
            ) from None

    def _restore(self, saved: Any) -> None:
        saved_digests = saved.get("input_digests", {})
        for key in sorted(set(saved_digests) | set(self.input_digests)):
            if saved_digests.get(key) != self.input_digests.get(key):
                raise FerlabError(
                    f"{self.run_dir}: {key} {self.config.flat()[key]} is not the file this run started with; "
                    "resuming would train or select on other data (put the original back, or start a new run)"
                )
        self.model.load_state_dict(saved["model"])
        self.state = TrainState(**saved["state"])
        self._pending_optimizer = (saved["optimizer"], saved["scheduler"])
        set_rng_states(saved["rng"])

    def _restore_best(self) -> None:
        if self.best_path.is_file():
            self.model.load_state_dict(load_torch_file(self.best_path, "ferlab checkpoint"))

    # -- the loop -----------------------------------------------------------------------

    def _improved(self, value: float) -> bool:
        best = self.state.best_metric
        if best is None:
            return True
        return value < best if self.config.train.monitor == "val_loss" else value > best

    def fit(self) -> dict[str, Any]:
        """Run every phase to its end or early stop, then write the final artefacts."""
        remove_stale_temporaries(self.run_dir)  # left by a kill during a save
        try:
            self._fit_phases()
        except KeyboardInterrupt:
            if not self.checkpoint_path.is_file():
                raise TrainingInterrupted(
                    "interrupted before the first epoch finished, so there is nothing to resume; "
                    "start the run again with the same command"
                ) from None
            raise TrainingInterrupted(
                f"interrupted; the last finished epoch is saved — resume with: ferlab train --resume {self.run_dir}"
            ) from None
        return self.finish()

    def _fit_phases(self) -> None:
        pending = self._pending_optimizer
        while self.state.phase_index < len(self.phases):
            phase = self.phases[self.state.phase_index]
            resuming_phase = pending is not None and self.state.epoch_in_phase > 0
            if self.state.phase_index > 0 and not resuming_phase:
                self._restore_best()  # phase 2 fine-tunes the best phase-1 weights
            self._begin_phase(phase)
            if resuming_phase:
                assert self.optimizer is not None and pending is not None
                self.optimizer.load_state_dict(pending[0])
                if self.scheduler is not None and pending[1] is not None:
                    self.scheduler.load_state_dict(pending[1])
            pending = None
            while self.state.epoch_in_phase < phase.epochs and self.state.bad_epochs < phase.patience:
                self._run_epoch(phase)
            self.state.phase_index += 1
            self.state.epoch_in_phase = 0
            self.state.bad_epochs = 0

    def _run_epoch(self, phase: Phase) -> None:
        assert self.optimizer is not None
        epoch = len(self.state.history)
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        record: dict[str, Any] = {"epoch": epoch + 1, "phase": phase.name, "lr": lr}
        record.update(self.train_epoch((self.config.seed, self.state.phase_index, self.state.epoch_in_phase)))
        record.update({f"val_{k}": v for k, v in self.evaluate(self.val_data).items()})
        record["seconds"] = time.perf_counter() - started
        monitored = record[self.config.train.monitor]
        if self.scheduler is not None:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(monitored)
            else:
                self.scheduler.step()
        state = self.state
        if self._improved(monitored):
            state.best_metric, state.best_epoch, state.bad_epochs = monitored, epoch + 1, 0
            atomic_save(self.model.state_dict(), self.best_path)
        else:
            state.bad_epochs += 1
        state.history.append(record)
        state.epoch_in_phase += 1
        state.seconds += record["seconds"]
        self.save_checkpoint()
        (self.run_dir / "history.json").write_text(json.dumps(state.history, indent=1))
        line = (
            f"epoch {epoch + 1} [{phase.name}] lr {lr:.2e} loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.4f} val_loss {record['val_loss']:.4f} "
            f"val_acc {record['val_accuracy']:.4f} val_f1 {record['val_macro_f1']:.4f} "
            f"{record['images_per_s']:.0f} img/s {record['seconds']:.0f}s"
            + (" *" if state.best_epoch == epoch + 1 else "")
        )
        self._log(line)
        logger.info(line)
        tqdm.write(line)

    def finish(self) -> dict[str, Any]:
        """Restore the best weights, fit the calibration temperature on validation data, and
        write metrics, curves and the model bundle."""
        from ferlab.training.runs import plot_history

        self._restore_best()
        val_logits = self.predict_logits(self.val_data.images)
        val_labels = self.val_data.labels.numpy()
        temperature = fit_temperature(val_logits.numpy(), val_labels)
        metrics: dict[str, Any] = {
            "best_epoch": self.state.best_epoch,
            "epochs_run": len(self.state.history),
            "train_seconds": round(self.state.seconds, 1),
            "threads": torch.get_num_threads(),
            "precision": "bf16 autocast" if self.bf16 else "fp32",
            "monitor": self.config.train.monitor,
            "label_set": self.label_set.name,
            "classes": list(self.label_set.classes),
            "temperature": temperature,
            "val": {
                **self.evaluate(self.val_data, val_logits),
                "samples": len(val_labels),
                "ece": expected_calibration_error(softmax(val_logits.numpy()), val_labels),
                "ece_calibrated": expected_calibration_error(softmax(val_logits.numpy(), temperature), val_labels),
            },
        }
        if "test" in self.dataset.split_names():
            metrics["test"] = self.evaluate(split_tensors(self.dataset, "test", soft=False))
        plot_history(self.state.history, self.run_dir / "curves.png")
        model = self.model.to(memory_format=torch.contiguous_format)
        save_bundle(
            ModelBundle(
                model=model,
                label_set=self.label_set,
                temperature=temperature,
                info={
                    "run": self.config.name,
                    "data": self.config.data.path,
                    "metrics": metrics,
                    "class_prior": prior_of_targets(self.train_data.targets.numpy()),
                },
            ),
            self.run_dir / "model.pt",
        )
        # Written last: train() takes metrics.json as the sign of a finished run.
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return metrics


_OLD_NUMPY_RNG_TYPES = (np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType)
"""The exact NumPy types in checkpoints written before RNG states were stored as tensors."""


def rng_states() -> dict[str, Any]:
    """The torch, NumPy and Python RNG states as tensors and plain values (no pickled objects)."""
    key, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": str(key),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "state": [int(v) for v in python_state], "gauss_next": gauss_next},
    }


def set_rng_states(saved: dict[str, Any]) -> None:
    """Restore what `rng_states` saved (or the NumPy tuple of an older checkpoint)."""
    torch.set_rng_state(saved["torch"])
    numpy_state, python_state = saved["numpy"], saved["python"]
    if isinstance(numpy_state, dict):
        numpy_state = (
            numpy_state["key"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    np.random.set_state(numpy_state)
    if isinstance(python_state, dict):
        python_state = (python_state["version"], tuple(python_state["state"]), python_state["gauss_next"])
    random.setstate(python_state)


def _without_pretrained(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "pretrained"}


def train(config: ExperimentConfig, runs_dir: Path = Path("runs")) -> tuple[Path, dict[str, Any]]:
    """Train the run `runs_dir/<config.name>`, never overwriting another experiment.

    A run folder left by the same config is picked up where it stopped: a finished run is
    returned as is and an interrupted one resumes, so a sweep over many configs can simply
    be started again in the next session.
    """
    run_dir = runs_dir / config.name
    if (run_dir / "last.pt").exists():
        saved = build_config(read_config_file(run_dir / "config.yaml")) if (run_dir / "config.yaml").is_file() else None
        if saved is None or saved.to_dict() != config.to_dict():
            raise FerlabError(
                f"{run_dir} already has a run with another config: resume it with --resume {run_dir} "
                "or pick another --name"
            )
        if (run_dir / "metrics.json").is_file():
            tqdm.write(f"{run_dir}: already trained with this config, not trained again")
            return run_dir, json.loads((run_dir / "metrics.json").read_text())
        return resume(run_dir)
    trainer = Trainer(config, run_dir)
    trainer.write_run_header()
    return run_dir, trainer.fit()


def resume(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Continue a killed or interrupted run from its last finished epoch."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FerlabError(f"{run_dir}: not a run folder (no config.yaml)")
    trainer = Trainer(build_config(read_config_file(config_path)), run_dir)
    trainer.restore_checkpoint()
    return run_dir, trainer.fit()
