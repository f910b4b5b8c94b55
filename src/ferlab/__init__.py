"""ferlab: train, evaluate, explain and serve facial expression recognition models.

import ferlab
predictor = ferlab.load()            # the shipped default model
for face in predictor.predict(ferlab.SAMPLE):   # or "photo.jpg", a PIL image, an RGB array
    print(face.box, face.label, face.confidence, face.probabilities)

Every command has its call here, the very function the command runs: `ferlab.train`,
`ferlab.resume`, `ferlab.evaluate`, `ferlab.bench`, `ferlab.export` (and `ferlab.split_heads`, its
`--head second`), `ferlab.list_models`.
Importing ferlab imports none of them (nor torch) until one is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

SAMPLE = Path(__file__).parent / "samples" / "astronaut.jpg"
"""A public-domain photo that ships with ferlab (NASA; provenance in samples/README.md), so a first
run needs no picture of one's own: `ferlab demo` runs on it."""

if TYPE_CHECKING:
    from ferlab.evaluation.evaluator import EvaluationReport
    from ferlab.inference.export import Export
    from ferlab.inference.predictor import Predictor
    from ferlab.models.record import ModelRecord
    from ferlab.training.config import ExperimentConfig


def load(name_or_path: str | None = None, **options: Any) -> Predictor:
    """A Predictor for a shipped model name, a model.pt or a run folder (imports torch lazily)."""
    from ferlab.inference.predictor import load as load_predictor

    return load_predictor(name_or_path, **options)


def train(
    config: ExperimentConfig | str | Path | dict[str, Any],
    *,
    runs_dir: str | Path = "runs",
    device: str | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Path, dict[str, Any]]:
    """Train an experiment (a config file, a dict of its keys, or an ExperimentConfig) into
    `runs_dir/<name>/` and return that folder and its metrics (`ferlab train`).

    `overrides` are `key=value` strings as `--set` takes them; a run already finished with the
    same config is returned as is, an interrupted one resumes; `device` overrides train.device.
    """
    from ferlab.training.entry import train as train_run

    return train_run(config, runs_dir, device, overrides)


def resume(run_dir: str | Path, *, device: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue an interrupted run from its last finished epoch (`ferlab train --resume`)."""
    from ferlab.training.entry import resume as resume_run

    return resume_run(run_dir, device)


def evaluate(model: str | Path, data: str | Path, **options: Any) -> tuple[Path, EvaluationReport]:
    """Score a shipped model, run folder or model.pt on a dataset's split and write its report
    (`ferlab evaluate`); returns the report folder and the report (`.all.accuracy`, `.to_markdown()`).

    Options (ferlab.evaluation.report.run_evaluation): split ("test"), out, data_format,
    ferplus_labels, ferplus_majority, tta (extra test-time augmentations to report), dedup,
    gradcam_examples, detect, detector, device.
    """
    from ferlab.evaluation.report import run_evaluation

    return run_evaluation(model, Path(data), **options)


def bench(models: Sequence[str | Path], data: Sequence[str | Path], **options: Any) -> list[dict[str, Any]]:
    """Every model on every dataset: one row of accuracy, macro-F1 and per-class recall each
    (`ferlab bench`); `ferlab.evaluation.report.benchmark_table(rows)` renders them.

    Options (ferlab.evaluation.report.benchmark): split ("auto"), detect, detector, tta.
    """
    from ferlab.evaluation.report import benchmark

    return benchmark([str(m) for m in models], [Path(d) for d in data], **options)


def export(model: str | Path, out: str | Path | None = None, **options: Any) -> Export:
    """Export a model as ONNX, checked against torch (`ferlab export`): `out` is a file or a
    folder; `int8=True, calibration=DATA` adds a static int8 copy (ferlab.inference.export)."""
    from ferlab.inference.export import export_model

    return export_model(model, out, **options)


def split_heads(model: str | Path, out: str | Path | None = None) -> Path:
    """Write the FER2013 head of a two-head run (`data.second_labels`) as a model file of its own
    (`ferlab export --head second`); `out` is a `.pt` file or a folder. Its temperature is 1.0,
    not fitted. Returns the file written (ferlab.models.bundle.write_second_head)."""
    from ferlab.models.bundle import write_second_head

    return write_second_head(model, out)[0]


def list_models() -> dict[str, ModelRecord]:
    """The shipped models' records by name, the default first (`ferlab models`); no torch."""
    from ferlab.models.shipped import shipped_models

    return dict(shipped_models())
