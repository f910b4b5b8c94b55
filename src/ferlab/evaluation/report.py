"""One evaluation run: load model and data, compute metrics, draw figures, write report.md.

What the reports' authors assembled by hand in notebooks comes from one command.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from ferlab.data.audit import read_clean_list
from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.errors import FerlabError
from ferlab.evaluation.evaluator import EvaluationResult, evaluate, report_sections, write_metrics
from ferlab.evaluation.plots import plot_confusion, plot_gradcam_examples, plot_reliability, plot_roc
from ferlab.inference.engine import TTA
from ferlab.models.bundle import load_bundle
from ferlab.training.config import build_config, read_config_file


def run_evaluation(
    model: Path,
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
) -> tuple[Path, dict[str, Any]]:
    """Evaluate a model (run folder or model.pt) on one split of a dataset; returns (folder, metrics).

    Each test-time augmentation in `tta` is reported next to the plain figures.
    """
    methods = [method for method in dict.fromkeys((tta,) if isinstance(tta, str) else tta) if method != "none"]
    unknown = [method for method in methods if method not in get_args(TTA)]
    if unknown:
        raise FerlabError(f"unknown test-time augmentation {', '.join(unknown)}; use flip or tencrop")
    bundle = load_bundle(model)
    spec = bundle.spec
    run_dir = model if model.is_dir() else None
    options = LoadOptions(
        size=spec.input_size, channels=spec.in_channels, seed=_split_seed(run_dir),
        ferplus_majority=ferplus_majority,  # type: ignore[arg-type]
    )
    dataset = load_dataset(data, format=data_format, ferplus_labels=ferplus_labels, options=options)  # type: ignore[arg-type]
    out_dir = out or (model if model.is_dir() else model.parent) / "eval" / f"{Path(data).name}-{split}"
    clean = read_clean_list(dedup) if dedup else None

    result = evaluate(bundle, dataset, split)
    summary = write_metrics(result, out_dir, clean, split)
    if methods:
        summary["tta"] = {}
        for method in methods:
            metrics = evaluate(bundle, dataset, split, method).metrics()
            summary["tta"][method] = {k: metrics[k] for k in ("accuracy", "macro_f1", "ece")}
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
    plot_confusion(result, out_dir / "confusion_matrix.png")
    plot_roc(result, out_dir / "roc.png")
    plot_reliability(result, out_dir / "reliability.png")
    output_index = [bundle.label_set.classes.index(c) for c in result.classes]
    if gradcam_examples:
        plot_gradcam_examples(bundle, result, output_index, out_dir / "gradcam_examples.png")
    _write_report(out_dir, result, summary, model, data, split, run_dir, gradcam_examples)
    return out_dir, summary


def _split_seed(run_dir: Path | None) -> int:
    """The seed the run split a dataset without splits with, so that its test images are
    the ones it never trained on (0, the default, for a bare model.pt)."""
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return 0
    return build_config(read_config_file(run_dir / "config.yaml")).data.split_seed


def _write_report(
    out_dir: Path, result: EvaluationResult, summary: dict[str, Any], model: Path, data: Path, split: str,
    run_dir: Path | None, gradcam_examples: bool,
) -> None:
    lines = [f"# Evaluation of `{model}`", "", f"Data: `{data}`, split `{split}`, classes: {', '.join(result.classes)}.", ""]
    lines += [f"- {note}" for note in result.notes] + ([""] if result.notes else [])
    if run_dir is not None and (run_dir / "curves.png").is_file():
        lines += ["## Training curves", "", f"![training curves]({os.path.relpath(run_dir / 'curves.png', out_dir)})", ""]
    lines += report_sections(summary, split) + [""]
    if "tta" in summary:
        lines += ["## Test-time augmentation", ""]
        for method, tta in summary["tta"].items():
            lines.append(f"- With `{method}`: accuracy {100 * tta['accuracy']:.2f}% "
                         f"({100 * (tta['accuracy'] - summary['all']['accuracy']):+.2f} points), "
                         f"macro-F1 {tta['macro_f1']:.3f}.")
        lines.append("")
    lines += [
        "## Confusion matrix", "", "![confusion matrix](confusion_matrix.png)", "",
        "## ROC curves", "", "![ROC](roc.png)", "",
        "## Calibration", "", "![reliability diagram](reliability.png)", "",
    ]
    if gradcam_examples:
        lines += ["## Grad-CAM on correct and wrong predictions", "", "![Grad-CAM](gradcam_examples.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))

