"""The training class prior of a model, and predictions rebalanced as if every class were equally common.

A classifier trained on FER+ learns that neutral and happy faces are common and contempt is
rare; on photos whose classes are balanced (posed lab sets) that prior costs the rare
classes. Dividing the calibrated probabilities by the training prior and renormalising is
the Bayes-optimal correction for a label shift to uniform classes (the post-hoc logit
adjustment of Menon et al., 2021, applied to temperature-scaled logits).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ferlab.errors import FerlabError

Prior = Literal["train", "uniform"]
PRIORS: tuple[str, ...] = ("train", "uniform")


def class_prior(info: dict, classes: int) -> np.ndarray:
    """The training class prior a bundle records in `info["class_prior"]`."""
    prior = info.get("class_prior")
    if prior is None:
        raise FerlabError(
            "this model does not record its training class prior, so it cannot be rebalanced "
            "(models trained since ferlab 0.2 do; retrain it, or use prior='train')"
        )
    values = np.asarray(prior, dtype=np.float64)
    if values.shape != (classes,) or (values <= 0).any():
        raise FerlabError(f"the model's class prior {prior!r} does not fit its {classes} classes")
    return values / values.sum()


def rebalance(probabilities: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Probabilities (N, K) under the training prior -> under a uniform prior."""
    weighted = probabilities / prior
    return weighted / weighted.sum(axis=1, keepdims=True)


def prior_of_targets(targets: np.ndarray) -> list[float]:
    """The class prior a model learns from its training targets (one-hot or vote distributions):
    their mean, floored so that a class missing from training cannot divide by zero."""
    prior = np.maximum(np.asarray(targets, dtype=np.float64).mean(axis=0), 1e-4)
    return [float(p) for p in prior / prior.sum()]
