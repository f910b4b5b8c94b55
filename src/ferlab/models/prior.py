"""The training class prior of a model, and predictions rebalanced as if every class were equally common.

A classifier trained on FER+ learns that neutral and happy faces are common and contempt is
rare; on photos whose classes are balanced (posed lab sets) that prior costs the rare
classes. Dividing the calibrated probabilities by the training prior and renormalising is
the Bayes-optimal correction for a label shift to uniform classes (the post-hoc logit
adjustment of Menon et al., 2021, applied to temperature-scaled logits). A strength between
0 and 1 divides by the prior raised to that power: half the correction, for photos whose
class mix is unknown (benchmarks/prior.py measures the trade-off).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import cache

import numpy as np

from ferlab.errors import FerlabError

logger = logging.getLogger("ferlab.models")

Prior = str | float
"""`train` (strength 0), `uniform` (strength 1) or a strength between 0 and 1 (a number, or its text)."""
PRIORS: dict[str, float] = {"train": 0.0, "uniform": 1.0}
DEFAULT_PRIOR = 0.5
"""Half the correction, in every front end and `ferlab.load()`: on photos whose class mix is
unknown it recalls the rare classes (disgust, fear, contempt) for little accuracy on
everyday photos (benchmarks/prior.py, docs/figures/prior.json)."""
PRIOR_HELP = (
    "How much to correct for the class mix the model was trained on (mostly neutral and happy faces): "
    "train (not at all: as common as in training), uniform (fully: every class equally likely, "
    f"which recalls disgust, fear and anger) or a strength between 0 and 1 (default {DEFAULT_PRIOR:g}: half way)."
)


def prior_strength(prior: Prior) -> float:
    """The strength of the rebalancing a `prior` argument asks for: 0 keeps the training prior."""
    if isinstance(prior, str) and prior in PRIORS:
        return PRIORS[prior]
    try:
        strength = float(prior)
    except ValueError:
        strength = math.nan
    if not 0.0 <= strength <= 1.0:  # also rejects nan
        raise FerlabError(f"unknown prior {prior!r}; use train, uniform or a strength between 0 and 1")
    return strength


def chosen_prior(
    prior: Prior | None, recorded: Sequence[float] | None, classes: int, model: str = "this model"
) -> tuple[float, np.ndarray | None]:
    """The strength and the normalised training prior to correct by, for a model (named `model`
    in the note) that records `recorded` (None in models made before ferlab did).

    `prior=None` asks for `DEFAULT_PRIOR`; a model without a recorded prior then runs
    uncorrected, with a one-line note, so that old models keep working. A prior asked for by
    name or number on such a model is an error.
    """
    strength = prior_strength(DEFAULT_PRIOR if prior is None else prior)
    if strength == 0:
        return 0.0, None
    if prior is None and recorded is None:
        _note_once(
            f"{model} does not record its training class prior, so its probabilities are not rebalanced "
            f"(the default prior {DEFAULT_PRIOR:g} needs it)"
        )
        return 0.0, None
    return strength, class_prior(recorded, classes)


@cache
def _note_once(message: str) -> None:
    """Each note once per process, not once per predictor (servers and `predict` load one per worker)."""
    logger.warning(message)


def class_prior(prior: Sequence[float] | None, classes: int) -> np.ndarray:
    """The training class prior a model records (its record's `class_prior`), normalised."""
    if prior is None:
        raise FerlabError(
            "this model does not record its training class prior, so it cannot be rebalanced "
            "(models trained since ferlab 0.2 do; retrain it, or use the prior train: --prior train)"
        )
    values = np.asarray(prior, dtype=np.float64)
    if values.shape != (classes,) or (values <= 0).any():
        raise FerlabError(f"the model's class prior {prior!r} does not fit its {classes} classes")
    return values / values.sum()


def rebalance(probabilities: np.ndarray, prior: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Probabilities (N, K) under the training prior -> under a uniform prior (strength 1), or
    part of the way there."""
    weighted = probabilities / prior**strength
    return weighted / weighted.sum(axis=1, keepdims=True)


def prior_of_targets(targets: np.ndarray) -> list[float]:
    """The class prior a model learns from its training targets (one-hot or vote distributions):
    their mean, floored so that a class missing from training cannot divide by zero."""
    prior = np.maximum(np.asarray(targets, dtype=np.float64).mean(axis=0), 1e-4)
    return [float(p) for p in prior / prior.sum()]
