"""`evaluate`: everything the reports show about a model, from one call.

Accuracy, top-2, per-class precision/recall/F1, confusion matrix, one-vs-rest ROC with
per-class AUC, calibration (ECE before and after temperature scaling), optionally on a
test set with near-copies of training images removed, across label sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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

ALL = "all"
"""The split name that means every image of a dataset."""


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

    def metrics(self, mask: np.ndarray | None = None) -> dict[str, Any]:
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
        aucs = {}
        for i, name in enumerate(self.classes):
            positives = labels == i
            if 0 < positives.sum() < len(labels):
                aucs[name] = float(roc_auc_score(positives, calibrated[:, i]))
        return {
            "samples": len(labels),
            "accuracy": float((predicted == labels).mean()),
            "top2_accuracy": float(top_k_accuracy_score(labels, calibrated, k=2, labels=class_ids))
            if len(self.classes) > 2
            else 1.0,
            "macro_f1": float(f1_score(labels, predicted, labels=class_ids, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(labels, predicted, labels=class_ids, average="weighted", zero_division=0)),
            "ece_uncalibrated": expected_calibration_error(raw, labels),
            "ece": expected_calibration_error(calibrated, labels),
            "temperature": self.temperature,
            "auc": aucs,
            "per_class": {c: report[c] for c in self.classes},
        }


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
    part, outputs, notes = align_labels(part, bundle.label_set)
    if part.image_shape != (bundle.spec.input_size, bundle.spec.input_size, bundle.spec.in_channels):
        raise FerlabError(
            f"dataset images are {part.image_shape}, the model takes {bundle.spec.input_size}x"
            f"{bundle.spec.input_size}x{bundle.spec.in_channels}: load it at the model's size"
        )
    engine = LogitEngine.for_bundle(bundle, backend, device=device)
    chosen = served_tta(bundle.info.tta) if tta is None else tta
    logits = engine.logits(part.images, chosen, f"classifying ({chosen} TTA)" if progress else None)[:, outputs]
    return EvaluationResult(
        classes=part.label_set.classes,
        labels=part.labels,
        logits=logits,
        sources=part.sources,
        temperature=bundle.temperature,
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
    part, outputs, notes = align_labels(part, bundle.label_set)
    files = [root / source for source in part.sources]
    if not all(f.is_file() for f in files[:1]):
        raise FerlabError(
            f"--detect needs the dataset's image files; {files[0] if files else root} is not one "
            "(a .csv dataset holds only 48x48 crops)"
        )
    # logits only: scored as trained, so no class-prior correction (and no note for models without one)
    predictor = Predictor(bundle, detector=detector, backend=backend, tta=tta, prior="train", device=device)
    spec = bundle.spec
    crops, detected = [], []
    for path in tqdm(files, desc="detecting faces", unit="image", leave=False, disable=None if progress else True):
        rgb = as_rgb(path)
        faces = predictor.detect(rgb)
        detected.append(bool(faces))
        crops.append(
            predictor.crops(rgb, faces[:1])[0] if faces else whole_image_face(rgb, spec.input_size, spec.in_channels)
        )
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
        temperature=bundle.temperature,
        notes=notes,
        faces=faces_array,
        detected=found,
    )


def metrics_table(metrics: dict[str, Any]) -> str:
    """The reports' classification-report table, in Markdown."""
    rows = []
    for name, row in metrics["per_class"].items():
        auc = metrics["auc"].get(name)
        rows.append(
            (
                name,
                f"{row['precision']:.3f}",
                f"{row['recall']:.3f}",
                f"{row['f1-score']:.3f}",
                int(row["support"]),
                "-" if auc is None else f"{auc:.3f}",
            )
        )
    lines = [
        markdown_table(("class", "precision", "recall", "F1", "support", "AUC"), rows, right=range(1, 6)),
        "",
        (
            f"Accuracy {100 * metrics['accuracy']:.2f}% on {metrics['samples']} images; top-2 "
            f"{100 * metrics['top2_accuracy']:.2f}%; macro-F1 {metrics['macro_f1']:.3f}; weighted-F1 "
            f"{metrics['weighted_f1']:.3f}; ECE {metrics['ece_uncalibrated']:.3f} uncalibrated, "
            f"{metrics['ece']:.3f} with temperature {metrics['temperature']:.2f}."
        ),
    ]
    return "\n".join(lines)


def write_metrics(
    result: EvaluationResult,
    out_dir: Path,
    clean: set[str] | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """metrics.json and classification_report.{txt,md}; with `clean`, the deduplicated figures too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"classes": list(result.classes), "notes": result.notes, "all": result.metrics()}
    if clean is not None:
        mask = np.isin(result.sources, list(clean))
        if not mask.any():
            raise FerlabError("none of the evaluated images is in the deduplicated list: is it for this dataset?")
        summary["deduplicated"] = result.metrics(mask)
        summary["deduplicated"]["removed"] = int((~mask).sum())
        if (~mask).any():  # the copies alone: how much overlap with training inflates a score
            summary["near_copies"] = result.metrics(~mask)
    if result.detected is not None and 0 < result.detected.sum() < len(result.detected):
        summary["face_found"] = result.metrics(result.detected)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "classification_report.md").write_text("\n".join(report_sections(summary, split)) + "\n")
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
    return summary


def report_sections(summary: dict[str, Any], split: str) -> list[str]:
    """Markdown classification reports: all images, then without and with only the near-copies."""
    heading = "## All images (every split)" if split == ALL else f"## All {split} images"
    sections = [heading, "", metrics_table(summary["all"])]
    if "face_found" in summary:
        sections += ["", "## Only the images where a face was found", "", metrics_table(summary["face_found"])]
    if "deduplicated" in summary:
        sections += [
            "",
            f"## Without near-copies of training images ({summary['deduplicated']['removed']} removed)",
            "",
            metrics_table(summary["deduplicated"]),
        ]
    if "near_copies" in summary:
        sections += [
            "",
            f"## Only the {split} images that have a near-copy in training",
            "",
            metrics_table(summary["near_copies"]),
        ]
    return sections


def confusion(result: EvaluationResult) -> np.ndarray:
    return confusion_matrix(result.labels, result.probabilities.argmax(1), labels=list(range(len(result.classes))))
