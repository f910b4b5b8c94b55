"""`evaluate`: everything the reports show about a model, from one call.

Accuracy, top-2, per-class precision/recall/F1, confusion matrix, one-vs-rest ROC with
per-class AUC, calibration (ECE before and after temperature scaling), optionally on a
test set with near-copies of training images removed, across label sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, f1_score, roc_auc_score, top_k_accuracy_score
from tqdm import tqdm

from ferlab.data.dataset import FaceDataset
from ferlab.data.markdown import markdown_table
from ferlab.errors import FerlabError
from ferlab.inference.engine import TTA, BackendName, LogitEngine, served_tta
from ferlab.inference.preprocess import whole_image_face
from ferlab.labels import LabelSet, map_labels
from ferlab.models.bundle import ModelBundle
from ferlab.models.calibration import expected_calibration_error, softmax
from ferlab.models.prior import DEFAULT_PRIOR, chosen_prior
from ferlab.models.record import ModelRecord

ALL = "all"
"""The split name that means every image of a dataset."""


@dataclass(frozen=True)
class ClassFigures:
    """One class's precision, recall, F1, number of images and one-vs-rest AUC (None when the
    images hold only that class or none of it)."""

    precision: float
    recall: float
    f1: float
    support: int
    auc: float | None


@dataclass(frozen=True)
class Metrics:
    """How well a model did on one set of images: accuracy, F1, calibration, each class, confusion."""

    samples: int
    accuracy: float
    top2_accuracy: float
    macro_f1: float
    weighted_f1: float
    ece_uncalibrated: float
    """Expected calibration error of the raw softmax."""
    ece: float
    """Expected calibration error after temperature scaling (the probabilities served)."""
    temperature: float
    per_class: dict[str, ClassFigures]
    confusion: list[list[int]]
    """Images by true class (rows) and predicted class (columns), in `per_class`'s order."""

    def to_dict(self) -> dict[str, Any]:
        """The figures as metrics.json has always held them (sklearn's per-class key names)."""
        return {
            "samples": self.samples,
            "accuracy": self.accuracy,
            "top2_accuracy": self.top2_accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "ece_uncalibrated": self.ece_uncalibrated,
            "ece": self.ece,
            "temperature": self.temperature,
            "auc": {name: row.auc for name, row in self.per_class.items() if row.auc is not None},
            "per_class": {
                name: {"precision": row.precision, "recall": row.recall, "f1-score": row.f1, "support": row.support}
                for name, row in self.per_class.items()
            },
            "confusion": self.confusion,
        }

    def to_markdown(self) -> str:
        """The reports' classification-report table and a line of overall figures."""
        rows = [
            (
                name,
                f"{row.precision:.3f}",
                f"{row.recall:.3f}",
                f"{row.f1:.3f}",
                row.support,
                "-" if row.auc is None else f"{row.auc:.3f}",
            )
            for name, row in self.per_class.items()
        ]
        return "\n".join(
            [
                markdown_table(("class", "precision", "recall", "F1", "support", "AUC"), rows, right=range(1, 6)),
                "",
                (
                    f"Accuracy {100 * self.accuracy:.2f}% on {self.samples} images; top-2 "
                    f"{100 * self.top2_accuracy:.2f}%; macro-F1 {self.macro_f1:.3f}; weighted-F1 "
                    f"{self.weighted_f1:.3f}; ECE {self.ece_uncalibrated:.3f} uncalibrated, "
                    f"{self.ece:.3f} with temperature {self.temperature:.2f}."
                ),
            ]
        )


@dataclass
class EvaluationReport:
    """Everything one evaluation measured, and on what: the facts every report is rendered from."""

    model: str
    data: str
    split: str
    scored: str
    """Which images were scored, in words (ferlab.evaluation.report.describe_split)."""
    protocol: str
    """How they were scored: face crops or the photo pipeline, and the test-time augmentation."""
    served_tta: str
    classes: tuple[str, ...]
    notes: list[str]
    all: Metrics
    deduplicated: Metrics | None = None
    """Without the images listed as near-copies of training images (`--dedup`)."""
    removed: int = 0
    """How many near-copies `deduplicated` leaves out."""
    near_copies: Metrics | None = None
    face_found: Metrics | None = None
    """With the photo pipeline: only the images where a face was found."""
    tta: dict[str, Metrics] = field(default_factory=dict)
    """The other test-time augmentations asked for, each scored."""
    default_prior: Metrics | None = None
    """Every image scored as `ferlab predict` serves by default: the probabilities rebalanced by
    the training class prior at `DEFAULT_PRIOR` (None for a model that records no prior). The
    main figures stay as trained, comparable with other papers' and tools'."""

    @property
    def images(self) -> int:
        return self.all.samples

    def to_dict(self) -> dict[str, Any]:
        """metrics.json: the report's facts as JSON."""
        summary: dict[str, Any] = {
            "classes": list(self.classes),
            "notes": self.notes,
            "all": self.all.to_dict(),
            "model": self.model,
            "data": self.data,
            "split": self.split,
            "scored": self.scored,
            "protocol": self.protocol,
            "served_tta": self.served_tta,
            "images": self.images,
        }
        if self.deduplicated is not None:
            summary["deduplicated"] = {**self.deduplicated.to_dict(), "removed": self.removed}
        for name in ("near_copies", "face_found"):
            part = getattr(self, name)
            if part is not None:
                summary[name] = part.to_dict()
        if self.default_prior is not None:
            summary["default_prior"] = {"strength": DEFAULT_PRIOR, **self.default_prior.to_dict()}
        if self.tta:
            summary["tta"] = {
                method: {"accuracy": m.accuracy, "macro_f1": m.macro_f1, "ece": m.ece} for method, m in self.tta.items()
            }
        return summary

    def to_markdown(self) -> str:
        """The classification reports: all images, then only those with a face found, without
        and with only the near-copies of training images, and all at the default class prior."""
        heading = "## All images (every split)" if self.split == ALL else f"## All {self.split} images"
        sections = (
            (heading, self.all),
            ("## Only the images where a face was found", self.face_found),
            (f"## Without near-copies of training images ({self.removed} removed)", self.deduplicated),
            (f"## Only the {self.split} images that have a near-copy in training", self.near_copies),
            (
                f"## All images at the default class prior ({DEFAULT_PRIOR:g}, as `ferlab predict` serves them)",
                self.default_prior,
            ),
        )
        return "\n\n".join(f"{title}\n\n{metrics.to_markdown()}" for title, metrics in sections if metrics is not None)


@dataclass
class EvaluationResult:
    """Predictions of a model on one split, restricted to the classes model and data share."""

    classes: tuple[str, ...]
    labels: np.ndarray
    logits: np.ndarray
    sources: np.ndarray
    temperature: float
    notes: list[str] = field(default_factory=list)
    faces: np.ndarray | None = None
    detected: np.ndarray | None = None
    """With the photo pipeline (`--detect`): whether a face was found in each image."""

    @property
    def probabilities(self) -> np.ndarray:
        """Calibrated probabilities (the model's stored temperature)."""
        return softmax(self.logits, self.temperature)

    def metrics(self, mask: np.ndarray | None = None) -> Metrics:
        """The scores on every image, or on those `mask` keeps."""
        keep = np.ones(len(self.labels), bool) if mask is None else mask
        labels, logits = self.labels[keep], self.logits[keep]
        if len(labels) == 0:
            raise FerlabError("no sample left to evaluate")
        calibrated, raw = softmax(logits, self.temperature), softmax(logits)
        predicted = calibrated.argmax(1)
        class_ids = list(range(len(self.classes)))
        report = classification_report(
            labels, predicted, labels=class_ids, target_names=list(self.classes), output_dict=True, zero_division=0
        )
        per_class = {}
        for i, name in enumerate(self.classes):
            positives = labels == i
            auc = float(roc_auc_score(positives, calibrated[:, i])) if 0 < positives.sum() < len(labels) else None
            row = report[name]
            per_class[name] = ClassFigures(
                float(row["precision"]), float(row["recall"]), float(row["f1-score"]), int(row["support"]), auc
            )
        return Metrics(
            samples=len(labels),
            accuracy=float((predicted == labels).mean()),
            top2_accuracy=float(top_k_accuracy_score(labels, calibrated, k=2, labels=class_ids))
            if len(self.classes) > 2
            else 1.0,
            macro_f1=float(f1_score(labels, predicted, labels=class_ids, average="macro", zero_division=0)),
            weighted_f1=float(f1_score(labels, predicted, labels=class_ids, average="weighted", zero_division=0)),
            ece_uncalibrated=expected_calibration_error(raw, labels),
            ece=expected_calibration_error(calibrated, labels),
            temperature=self.temperature,
            per_class=per_class,
            confusion=confusion_matrix(labels, predicted, labels=class_ids).tolist(),
        )


def align_labels(dataset: FaceDataset, model_labels: LabelSet) -> tuple[FaceDataset, list[int], list[str]]:
    """Restrict data and model to their shared classes.

    Returns the dataset relabelled to the shared classes (in the model's order), the model
    output indices of those classes, and notes saying what was dropped.
    """
    notes: list[str] = []
    shared = tuple(c for c in model_labels.classes if c in dataset.label_set.classes)
    if not shared:
        raise FerlabError(
            f"the model's classes ({', '.join(model_labels.classes)}) and the data's "
            f"({', '.join(dataset.label_set.classes)}) have nothing in common"
        )
    if len(shared) < 2:
        raise FerlabError(f"model and data share only {shared[0]!r}: nothing to evaluate")
    target = LabelSet(model_labels.name if shared == model_labels.classes else f"shared-{len(shared)}", shared)
    if target.classes != dataset.label_set.classes:
        mapping = map_labels(dataset.label_set, target)
        if mapping.dropped:
            dropped = int(np.isin(dataset.labels, [dataset.label_set.index(c) for c in mapping.dropped]).sum())
            notes.append(f"data classes the model lacks, {dropped} samples dropped: {', '.join(mapping.dropped)}")
        dataset = dataset.remap(mapping)
    missing = [c for c in model_labels.classes if c not in shared]
    if missing:
        notes.append(
            f"model classes absent from the data: {', '.join(missing)}; predictions restricted to the "
            f"shared classes ({', '.join(shared)})"
        )
    return dataset, [model_labels.classes.index(c) for c in shared], notes


def split_part(dataset: FaceDataset, split: str) -> FaceDataset:
    """One split of a dataset, or every image for `all`."""
    return dataset if split == ALL else dataset.split(split)


def evaluate(
    bundle: ModelBundle,
    dataset: FaceDataset,
    split: str = "test",
    tta: TTA | None = None,
    backend: BackendName = "torch",
    device: str = "cpu",
    progress: bool = False,
) -> EvaluationResult:
    """The model on one split (`all`: every image) of a dataset whose images are face crops
    (`device`: cpu, cuda, cuda:N or mps, where the network runs; `tta=None`: as the model is
    served, `train.tta`; `progress`: a bar on a terminal)."""
    part = split_part(dataset, split)
    part, outputs, notes = align_labels(part, bundle.record.labels)
    if part.image_shape != (bundle.record.input_size, bundle.record.input_size, bundle.record.in_channels):
        raise FerlabError(
            f"dataset images are {part.image_shape}, the model takes {bundle.record.input_size}x"
            f"{bundle.record.input_size}x{bundle.record.in_channels}: load it at the model's size"
        )
    engine = LogitEngine.for_bundle(bundle, backend, device=device)
    chosen = served_tta(bundle.record.tta) if tta is None else tta
    logits = engine.logits(part.images, chosen, f"classifying ({chosen} TTA)" if progress else None)[:, outputs]
    return EvaluationResult(
        classes=part.label_set.classes,
        labels=part.labels,
        logits=logits,
        sources=part.sources,
        temperature=bundle.record.temperature,
        notes=notes,
        faces=part.images,
    )


def evaluate_photos(
    bundle: ModelBundle,
    dataset: FaceDataset,
    root: Path,
    split: str = "test",
    tta: TTA | None = None,
    detector: str = "auto",
    backend: BackendName = "torch",
    device: str = "cpu",
    progress: bool = False,
) -> EvaluationResult:
    """The model through the full photo pipeline on one split: every original image file is
    read at full resolution, faces are detected and cropped (landmark-aligned) as
    `ferlab predict` does, and the largest face is classified. An image with no face found
    is classified whole, as a face crop; `detected` records which images had one.
    """
    from ferlab.data.imageio import as_rgb
    from ferlab.inference.predictor import Predictor

    part = split_part(dataset, split)
    part, outputs, notes = align_labels(part, bundle.record.labels)
    files = [root / source for source in part.sources]
    if not all(f.is_file() for f in files[:1]):
        raise FerlabError(
            f"--detect needs the dataset's image files; {files[0] if files else root} is not one "
            "(a .csv dataset holds only 48x48 crops)"
        )
    # logits only: scored as trained, so no class-prior correction (and no note for models without one)
    predictor = Predictor(bundle, detector=detector, backend=backend, tta=tta, prior="train", device=device)
    record = bundle.record
    crops, detected = [], []
    for path in tqdm(files, desc="detecting faces", unit="image", leave=False, disable=None if progress else True):
        rgb = as_rgb(path)
        faces = predictor.detect(rgb)
        detected.append(bool(faces))
        size, channels = record.input_size, record.in_channels
        crops.append(predictor.crops(rgb, faces[:1])[0] if faces else whole_image_face(rgb, size, channels))
    faces_array = np.stack(crops)
    described = f"classifying ({predictor.tta} TTA)" if progress else None
    logits = predictor.engine.logits(faces_array, predictor.tta, described)[:, outputs]
    found = np.array(detected)
    notes.append(
        f"photo pipeline: detector {predictor.detector.name}, landmark-aligned crops; a face was found in "
        f"{int(found.sum())} of {len(found)} images (the largest face is classified; an image without "
        "one is classified whole, as a face crop)"
    )
    return EvaluationResult(
        classes=part.label_set.classes,
        labels=part.labels,
        logits=logits,
        sources=part.sources,
        temperature=bundle.record.temperature,
        notes=notes,
        faces=faces_array,
        detected=found,
    )


def at_default_prior(result: EvaluationResult, record: ModelRecord) -> Metrics | None:
    """Every image's figures with the probabilities rebalanced as served by default
    (ferlab.models.prior.rebalance at `DEFAULT_PRIOR`); None without a recorded prior."""
    strength, prior = chosen_prior(None, record.class_prior, record.num_classes, record.name or "this model")
    if prior is None:
        return None
    shared = prior[[record.classes.index(name) for name in result.classes]]
    # softmax(logits / T - s log prior) is the calibrated probability divided by prior^s, renormalised
    shifted = result.logits - result.temperature * strength * np.log(shared)
    return replace(result, logits=shifted).metrics()


def subsets(result: EvaluationResult, clean: set[str] | None = None) -> dict[str, Any]:
    """The metrics of every image and of the parts a report shows apart: without and with only the
    near-copies listed in `clean` (their count as `removed`), and the images where a face was found."""
    parts: dict[str, Any] = {"all": result.metrics()}
    if clean is not None:
        mask = np.isin(result.sources, list(clean))
        if not mask.any():
            raise FerlabError("none of the evaluated images is in the deduplicated list: is it for this dataset?")
        parts["deduplicated"], parts["removed"] = result.metrics(mask), int((~mask).sum())
        if (~mask).any():  # the copies alone: how much overlap with training inflates a score
            parts["near_copies"] = result.metrics(~mask)
    if result.detected is not None and 0 < result.detected.sum() < len(result.detected):
        parts["face_found"] = result.metrics(result.detected)
    return parts


def write_metrics(report: EvaluationReport, result: EvaluationResult, out_dir: Path) -> None:
    """metrics.json and classification_report.{txt,md}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report.to_dict(), indent=1))
    (out_dir / "classification_report.md").write_text(report.to_markdown() + "\n")
    predicted = result.probabilities.argmax(1)
    (out_dir / "classification_report.txt").write_text(
        classification_report(
            result.labels,
            predicted,
            labels=list(range(len(result.classes))),
            target_names=list(result.classes),
            digits=3,
            zero_division=0,
        )
    )


def confusion(result: EvaluationResult) -> np.ndarray:
    return confusion_matrix(result.labels, result.probabilities.argmax(1), labels=list(range(len(result.classes))))
