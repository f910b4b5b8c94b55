"""Confidence calibration: expected calibration error and temperature scaling.

A FER model that says 95% should be right 95% of the time; the first report's model was
confidently wrong on webcam photos. Temperature scaling (Guo et al., 2017) fits one
scalar on validation logits and never changes which class wins. This module sits below
training, inference and evaluation, which all use it; torch is imported only to fit a
temperature, so applying one (the inference path) needs NumPy alone.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and sample count (equal-width bins)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / np.maximum(counts, 1)
    accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / np.maximum(counts, 1)
    return mean_confidence, accuracy, counts


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the count-weighted gap between confidence and accuracy over confidence bins."""
    confidence, accuracy, counts = reliability_bins(probabilities, labels, n_bins)
    return float(np.sum(counts * np.abs(confidence - accuracy)) / max(1, counts.sum()))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising negative log-likelihood on held-out (validation) logits."""
    import torch
    import torch.nn.functional as F

    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    labels_t = torch.as_tensor(labels, dtype=torch.int64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))
