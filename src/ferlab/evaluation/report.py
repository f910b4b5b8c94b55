"""One evaluation run: load model and data, compute metrics, draw figures, write report.md.

What the reports' authors assembled by hand in notebooks comes from one command. Also
`benchmark`: several models on several datasets, one table (`ferlab bench`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ferlab.data.audit import read_clean_list
from ferlab.data.dataset import FaceDataset
from ferlab.data.loader import detect_format, load_dataset
from ferlab.data.markdown import markdown_table
from ferlab.data.options import LoadOptions
from ferlab.errors import FerlabError
from ferlab.evaluation.evaluator import (
    ALL,
    EvaluationReport,
    EvaluationResult,
    at_default_prior,
    evaluate,
    evaluate_photos,
    subsets,
    write_metrics,
)
from ferlab.evaluation.plots import plot_confusion, plot_gradcam_examples, plot_reliability, plot_roc
from ferlab.inference.engine import TTA, check_tta, served_tta
from ferlab.inference.predictor import model_label, resolve_model
from ferlab.labels import EMOTIONS
from ferlab.models.bundle import ModelBundle, load_bundle

SPLIT_CHOICES = ("train", "val", "test", ALL)


def data_label(data: Path) -> str:
    resolved = Path(data).expanduser().resolve()
    return resolved.stem if resolved.is_file() else resolved.name


def default_out_dir(model: str, data: Path, split: str) -> Path:
    """./eval/<model>-<dataset>-<split>/ in the working directory (never inside the package)."""
    return Path.cwd() / "eval" / f"{model}-{data_label(data)}-{split}"


def native_splits(data: Path, data_format: str) -> set[str] | None:
    """The splits a dataset's files name themselves (the rest are carved out by seed); None if unknown."""
    fmt = detect_format(Path(data)) if data_format == "auto" else data_format
    if fmt == "folder":
        from ferlab.data.folder import list_folder

        return {split for _, split, _ in list_folder(Path(data))} - {""}
    if fmt == "fer2013-csv":
        with Path(data).open(newline="", encoding="utf-8-sig") as handle:
            header = {c.strip() for c in next(csv.reader(handle), [])}
        return {"train", "val", "test"} if "Usage" in header else set()
    if fmt == "ferplus-folder":  # FER2013Train/Valid/Test name their split; a renamed one names none
        from ferlab.data.ferplus import split_folders

        return {split for _, split in split_folders(Path(data))} - {""}
    return None


def describe_split(dataset: FaceDataset, split: str, native: set[str] | None, seed: int) -> str:
    """Which images were scored, in words, with their number."""
    total = len(dataset)
    if split == ALL:
        return f"every image, all splits ({total} images)"
    count = int((dataset.splits == split).sum())
    text = f"split `{split}`, {count} of {total} images"
    if native is not None and not native:
        text += (
            f": a seeded stratified part (seed {seed}) carved out of a dataset without splits; "
            "`--split all` scores every image"
        )
    elif native is not None and split not in native:
        text += f": carved out of the training images (seed {seed}), the dataset has no `{split}` split of its own"
    return text


def resolve_split(split: str, native: set[str] | None) -> str:
    """`auto`: the test split where the dataset has one of its own, else every image."""
    if split != "auto":
        return split
    return "test" if native is None or "test" in native else ALL


def _check_split(split: str) -> None:
    if split not in SPLIT_CHOICES:
        raise FerlabError(f"unknown split {split!r}; use {', '.join(SPLIT_CHOICES)}")


def run_evaluation(
    model: str | Path,
    data: Path,
    *,
    split: str = "test",
    out: Path | None = None,
    data_format: str = "auto",
    ferplus_labels: Path | None = None,
    ferplus_majority: str = "strict",
    tta: TTA | Sequence[TTA] = (),
    dedup: Path | None = None,
    gradcam_examples: bool = True,
    detect: bool = False,
    detector: str = "auto",
    device: str = "cpu",
    progress: bool = False,
) -> tuple[Path, EvaluationReport]:
    """Evaluate a model (shipped name, run folder or model.pt) on one split of a dataset, or on
    every image (`split="all"`); returns (folder, report).

    The main figures are the model as served (with the test-time augmentation it records,
    `train.tta`); each other one in `tta` ("none" included) is reported next to them. With
    `detect`, each image goes through the photo pipeline (detect, align, classify) instead
    of being treated as a face crop. The folder defaults to `default_out_dir`. `progress` shows
    bars on a terminal while faces are detected and classified.
    """
    _check_split(split)
    requested = [check_tta(method) for method in dict.fromkeys((tta,) if isinstance(tta, str) else tta)]
    path = resolve_model(model)
    bundle = load_bundle(path)
    served = served_tta(bundle.record.tta)
    methods = [method for method in requested if method != served]
    name = model_label(model, path)
    run_dir = path if path.is_dir() else None
    dataset, seed = _load(bundle, data, data_format, ferplus_labels, ferplus_majority)
    native = native_splits(data, data_format) if ferplus_labels is None else None
    scored = describe_split(dataset, split, native, seed)
    out_dir = out or default_out_dir(name, data, split)
    clean = read_clean_list(dedup) if dedup else None

    def score(method: TTA) -> EvaluationResult:
        if detect:
            return evaluate_photos(
                bundle, dataset, Path(data), split, method, detector, device=device, progress=progress
            )
        return evaluate(bundle, dataset, split, method, device=device, progress=progress)

    result = score(served)
    report = EvaluationReport(
        model=name,
        data=str(data),
        split=split,
        scored=scored,
        protocol=_protocol(bundle, detect),
        served_tta=served,
        classes=result.classes,
        notes=result.notes,
        **subsets(result, clean),
        tta={method: score(method).metrics() for method in methods},
        default_prior=at_default_prior(result, bundle.record),
    )
    write_metrics(report, result, out_dir)
    figures = tqdm(
        total=4 + gradcam_examples, desc="figures", unit="figure", leave=False, disable=None if progress else True
    )
    with figures:  # Grad-CAM examples take several seconds on a CPU
        plot_confusion(result, out_dir / "confusion_matrix.png")
        figures.update()
        plot_roc(result, out_dir / "roc.png")
        figures.update()
        plot_reliability(result, out_dir / "reliability.png")
        figures.update()
        output_index = [bundle.record.labels.classes.index(c) for c in result.classes]
        if gradcam_examples:
            plot_gradcam_examples(bundle, result, output_index, out_dir / "gradcam_examples.png")
            figures.update()
        _write_report(out_dir, report, path, run_dir, gradcam_examples)
        figures.update()
    return out_dir, report


def _load(
    bundle: ModelBundle,
    data: Path,
    data_format: str,
    ferplus_labels: Path | None,
    ferplus_majority: str,
) -> tuple[FaceDataset, int]:
    record = bundle.record
    seed = bundle.record.training.split_seed  # the seed its run split a dataset without splits with (0 by default)
    options = LoadOptions(
        size=record.input_size,
        channels=record.in_channels,
        seed=seed,
        ferplus_majority=ferplus_majority,  # type: ignore[arg-type]
    )
    dataset = load_dataset(data, format=data_format, ferplus_labels=ferplus_labels, options=options)  # type: ignore[arg-type]
    return dataset, seed


def _protocol(bundle: ModelBundle, detect: bool) -> str:
    record = bundle.record
    size = f"{record.input_size}x{record.input_size} {'gray' if record.in_channels == 1 else 'RGB'}"
    if detect:
        return (
            f"photo pipeline: each image file is read at full size, faces are detected and the largest is "
            f"warped onto the training crops' landmark template at {size}, as `ferlab predict` does"
        )
    return f"face crops: each image is taken as a face crop and resized to the model's input ({size})" + (
        "; scored as served, each face averaged with its mirror image (`train.tta: flip`)"
        if bundle.record.tta == "flip"
        else ""
    )


def _write_report(
    out_dir: Path, report: EvaluationReport, path: Path, run_dir: Path | None, gradcam_examples: bool
) -> None:
    lines = [
        f"# Evaluation of `{report.model}`",
        "",
        f"- Model: `{path}`.",
        f"- Data: `{report.data}`, {report.scored}; {report.images} images scored.",
        f"- Protocol: {report.protocol}.",
        f"- Classes: {', '.join(report.classes)}.",
        "",
    ]
    lines += [f"- {note}" for note in report.notes] + ([""] if report.notes else [])
    if run_dir is not None and (run_dir / "curves.png").is_file():
        lines += [
            "## Training curves",
            "",
            f"![training curves]({os.path.relpath(run_dir / 'curves.png', out_dir)})",
            "",
        ]
    lines += [report.to_markdown(), ""]
    if report.tta:
        served = "" if report.served_tta == "none" else f" (the figures above: served with `{report.served_tta}`)"
        lines += ["## Test-time augmentation", "", f"Other test-time augmentations{served}:", ""]
        for method, tta in report.tta.items():
            lines.append(
                f"- With `{method}`: accuracy {100 * tta.accuracy:.2f}% "
                f"({100 * (tta.accuracy - report.all.accuracy):+.2f} points), "
                f"macro-F1 {tta.macro_f1:.3f}."
            )
        lines.append("")
    lines += [
        "## Confusion matrix",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "## ROC curves",
        "",
        "![ROC](roc.png)",
        "",
        "## Calibration",
        "",
        "![reliability diagram](reliability.png)",
        "",
    ]
    if gradcam_examples:
        lines += ["## Grad-CAM on correct and wrong predictions", "", "![Grad-CAM](gradcam_examples.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


# --- several models on several datasets ------------------------------------------------------


def benchmark(
    models: Sequence[str | Path],
    datasets: Sequence[Path],
    *,
    split: str = "auto",
    detect: bool = False,
    detector: str = "auto",
    tta: TTA | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per (model, dataset): split scored, images, accuracy, macro-F1, recall per class.

    `tta=None` scores each model as it is served (`train.tta`); `progress` shows a bar per
    model and dataset on a terminal.

    `split="auto"` scores a dataset's own test split where it has one and every image of a
    dataset without splits (external validation: the model never saw these images).
    """
    if split != "auto":
        _check_split(split)
    paths = [resolve_model(reference) for reference in models]  # a bad name fails before any scoring
    splits = {data: native_splits(data, "auto") for data in datasets}  # so does a missing dataset
    rows = []
    overall = tqdm(total=len(models) * len(datasets), unit="run", leave=False, disable=None if progress else True)
    for reference, path in zip(models, paths):
        bundle = load_bundle(path)
        for data in datasets:
            overall.set_description(f"{model_label(reference, path)} on {data_label(data)}")
            native = splits[data]
            chosen = resolve_split(split, native)
            dataset, _ = _load(bundle, data, "auto", None, "strict")
            result = (
                evaluate_photos(bundle, dataset, Path(data), chosen, tta, detector, device=device, progress=progress)
                if detect
                else evaluate(bundle, dataset, chosen, tta, device=device, progress=progress)
            )
            metrics = result.metrics()
            rows.append(
                {
                    "model": model_label(reference, path),
                    "data": data_label(data),
                    "split": chosen,
                    "images": metrics.samples,
                    "accuracy": metrics.accuracy,
                    "macro_f1": metrics.macro_f1,
                    "recall": {c: row.recall for c, row in metrics.per_class.items() if row.support > 0},
                    "faces_found": None if result.detected is None else int(np.sum(result.detected)),
                    "notes": result.notes,
                }
            )
            overall.update()
    overall.close()
    return rows


def benchmark_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of `benchmark` as one Markdown table (recall per class; - where not scored)."""
    classes = [c for c in EMOTIONS if any(c in row["recall"] for row in rows)]
    detect = any(row["faces_found"] is not None for row in rows)
    head = [
        "model",
        "data",
        "split",
        "images",
        *(["faces found"] if detect else []),
        "accuracy",
        "macro-F1",
        *(f"recall {c}" for c in classes),
    ]
    table = []
    for row in rows:
        cells = [row["model"], row["data"], row["split"], str(row["images"])]
        if detect:
            cells.append("-" if row["faces_found"] is None else str(row["faces_found"]))
        cells += [f"{100 * row['accuracy']:.2f}%", f"{row['macro_f1']:.3f}"]
        cells += [f"{row['recall'][c]:.3f}" if c in row["recall"] else "-" for c in classes]
        table.append(cells)
    return markdown_table(head, table, right=range(3, len(head)))
