"""One network inside a `Predictor`: its engine and how its logits become probabilities.

A predictor holds one `Member` per model it averages; a single model is an ensemble of one,
so a model and an ensemble (`A+B`, ferlab.models.shipped.member_references) share one code
path. Each member keeps what it would have alone (its temperature, served TTA and class
prior), so an ensemble averages exactly the probabilities its members give by themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ferlab.errors import FerlabError
from ferlab.inference.engine import (
    TTA,
    BackendName,
    LogitEngine,
    MissingExport,
    OnnxBackend,
    Precision,
    export_folders,
    onnx_cuda_available,
    onnxruntime_available,
    served_tta,
)
from ferlab.models.calibration import softmax
from ferlab.models.prior import Prior, chosen_prior, rebalance
from ferlab.models.record import ModelRecord, find_record
from ferlab.models.shipped import ResolvedModel, resolve

if TYPE_CHECKING:
    from ferlab.models.bundle import ModelBundle

Input = tuple[int, int]
"""A network's input: (size, channels) of the uint8 face crops it takes."""


class Member:
    """A network with its record, the test-time augmentation it is served with and the class
    prior its probabilities are rebalanced by."""

    def __init__(
        self,
        model: ModelBundle | str | Path,
        backend: BackendName,
        precision: Precision,
        threads: int | None,
        device: str,
        tta: TTA | None,
        prior: Prior | None,
    ) -> None:
        """`model` is a loaded bundle or one model reference (ferlab.models.shipped.resolve);
        `tta=None` serves the model's own (`train.tta`)."""
        self._bundle: ModelBundle | None = None
        self.source: Path | None = None
        """The model file it was loaded from (None for a bundle passed in or an export)."""
        engine = None
        if isinstance(model, (str, Path)):
            resolved = resolve(model)
            self.source, self.label = resolved.weights, resolved.label
            engine = _export_engine(resolved, backend, precision, threads, device)
        else:
            self._bundle, self.label = model, "this model"  # for the note on a missing class prior
        if engine is None:
            engine = LogitEngine.for_bundle(self.bundle, backend, precision, threads, self.source, device)
        self.engine = engine
        self.record: ModelRecord = engine.record
        """What the model is (ferlab.models.record): its export's, or the one in its weights file."""
        self.tta: TTA = served_tta(self.record.tta) if tta is None else tta
        self.prior_strength, self.class_prior = chosen_prior(
            prior, self.record.class_prior, self.record.num_classes, self.label
        )

    @property
    def input(self) -> Input:
        return self.record.input_size, self.record.in_channels

    @property
    def bundle(self) -> ModelBundle:
        """The model's weights as a torch bundle (Grad-CAM, model cards), loaded on first use."""
        if self._bundle is None:
            from ferlab.models.bundle import load_bundle

            if self.source is None:
                raise FerlabError(
                    "this model is an ONNX export without its weights: Grad-CAM and model cards need its model.pt"
                )
            self._bundle = load_bundle(self.source)
        return self._bundle

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """Calibrated, rebalanced probabilities (N, K) for uint8 crops at this member's input."""
        probabilities = softmax(self.engine.logits(faces, self.tta), self.record.temperature)
        if self.class_prior is None:
            return probabilities
        return rebalance(probabilities, self.class_prior, self.prior_strength)


def _export_engine(
    resolved: ResolvedModel, backend: BackendName, precision: Precision, threads: int | None, device: str
) -> LogitEngine | None:
    """The model's ONNX export on ONNX Runtime, found from its record without torch: the file
    named, the exports beside the record named, a shipped model's, or the cached export of a
    model file; None where the weights must serve it."""
    usable = backend != "torch" and onnxruntime_available() and (device == "cpu" or onnx_cuda_available())
    if resolved.weights is None and not usable:
        raise FerlabError(
            f"{resolved.path}: an ONNX export runs on ONNX Runtime only (pip install onnxruntime; "
            "backend auto or onnx, and onnxruntime-gpu for a GPU)"
        )
    if not usable:
        return None
    record, export = resolved.record, resolved.export
    if export is not None and record is not None:
        return LogitEngine(OnnxBackend(export, threads, device, record), record)
    if record is None and resolved.weights is not None and resolved.weights.is_file():
        found = find_record(resolved.weights, export_folders())
        record = None if found is None else found[0]
    if record is None:
        return None
    try:
        return LogitEngine.for_export(record, precision, threads, device, resolved.exports)
    except MissingExport:
        if resolved.weights is None:
            raise
        return None  # the record is there, its export is not (yet): made from the weights
