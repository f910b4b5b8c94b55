"""The evaluation figures: confusion matrices, ROC curves, reliability diagram, Grad-CAM grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from ferlab.evaluation.evaluator import EvaluationResult, confusion
from ferlab.evaluation.gradcam import gradcam, overlay
from ferlab.models.bundle import ModelBundle
from ferlab.models.calibration import reliability_bins, softmax


def plot_confusion(result: EvaluationResult, path: Path) -> None:
    """Counts and row-normalised (recall) confusion matrices side by side."""
    counts = confusion(result)
    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(result.classes)
    fig = Figure(figsize=(5.2 + 0.9 * n, 0.45 * n + 3))
    axes = fig.subplots(1, 2)
    for ax, matrix, title, fmt in ((axes[0], counts, "Counts", "d"), (axes[1], normalised, "Row-normalised", ".2f")):
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(n), result.classes, rotation=45, ha="right")
        ax.set_yticks(range(n), result.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        limit = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    format(matrix[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if matrix[i, j] > limit else "black",
                )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_roc(result: EvaluationResult, path: Path) -> None:
    """One-vs-rest ROC per class with its AUC."""
    probabilities = result.probabilities
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for i, name in enumerate(result.classes):
        positives = result.labels == i
        if 0 < positives.sum() < len(positives):
            fpr, tpr, _ = roc_curve(positives, probabilities[:, i])
            ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(positives, probabilities[:, i]):.3f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one vs rest")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_reliability(result: EvaluationResult, path: Path) -> None:
    """Accuracy against confidence, before and after temperature scaling."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for temperature, label in ((1.0, "uncalibrated"), (result.temperature, f"T = {result.temperature:.2f}")):
        confidence, accuracy, counts = reliability_bins(softmax(result.logits, temperature), result.labels)
        used = counts > 0
        ax.plot(confidence[used], accuracy[used], marker="o", label=label)
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_gradcam_examples(
    bundle: ModelBundle, result: EvaluationResult, output_index: list[int], path: Path, per_row: int = 6, seed: int = 0
) -> None:
    """Grad-CAM on random correct (top row) and wrong (bottom row) predictions."""
    assert result.faces is not None
    predicted = result.probabilities.argmax(1)
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, np.ndarray]] = []
    for title, pool in (
        ("correct", np.flatnonzero(predicted == result.labels)),
        ("wrong", np.flatnonzero(predicted != result.labels)),
    ):
        rows.append((title, rng.choice(pool, size=min(per_row, len(pool)), replace=False) if len(pool) else pool))
    fig = Figure(figsize=(per_row * 1.6, 4))
    axes = fig.subplots(2, per_row, squeeze=False)
    for r, (title, picks) in enumerate(rows):
        for c in range(per_row):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(picks):
                continue
            i = picks[c]
            heatmap, _ = gradcam(bundle, result.faces[i], output_index[predicted[i]])
            ax.imshow(overlay(result.faces[i], heatmap))
            ax.set_title(
                f"{title}: {result.classes[predicted[i]]}\ntrue {result.classes[result.labels[i]]}", fontsize=7
            )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
