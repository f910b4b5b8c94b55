"""Model cards: what a shipped model is, how it was made, and how well it does, measured.

Every figure on a card comes from the run folder or is measured when the card is written,
by one command (`ferlab runs card`), so a card can always be regenerated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ferlab.evaluation.evaluator import metrics_table
from ferlab.evaluation.report import run_evaluation
from ferlab.inference.predictor import Predictor
from ferlab.models.bundle import BundleInfo, load_bundle


def classification_speed(predictor: Predictor, batch: int, seconds: float = 3.0) -> float:
    """Faces per second through the predictor's backend at one batch size (detection excluded)."""
    spec = predictor.bundle.spec
    faces = np.zeros((batch, spec.input_size, spec.input_size, spec.in_channels), np.uint8)
    predictor.classify(faces)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predictor.classify(faces)
        done += batch
    return done / (time.perf_counter() - started)


TTA_WORDS = {
    "none": "with none",
    "flip": "with horizontal flips",
    "tencrop": "with ten crops",
}


def write_card(
    run_dir: Path, data: Path, out: Path, dedup: Path | None = None, name: str | None = None, command: str | None = None
) -> dict[str, Any]:
    """Evaluate the run's model on the test split and write its Markdown model card."""
    bundle = load_bundle(run_dir)
    spec = bundle.spec
    eval_dir, summary = run_evaluation(
        run_dir,
        data,
        split="test",
        dedup=dedup,
        tta=("none", "flip", "tencrop"),  # the one the model is served with is the headline
        out=run_dir / "eval" / f"{Path(data).name}-test",
    )  # the card's report stays with its run
    train_metrics = json.loads((run_dir / "metrics.json").read_text())
    config_text = (run_dir / "config.yaml").read_text()  # shown on the card as it is
    info = bundle.info
    validation = (
        f"the validation images with no near-copy in training (`{info.val_clean}`)"
        if info.val_clean
        else "the validation split"
    )
    params = sum(p.numel() for p in bundle.model.parameters())
    predictor = Predictor(bundle)
    speed_1, speed_64 = classification_speed(predictor, 1), classification_speed(predictor, 64)
    all_metrics = summary["all"]
    title = name or run_dir.name
    lines = [
        f"# Model card: {title}",
        "",
        (
            f"- Architecture: `{spec.name}` {spec.config}, {params:,} parameters, input "
            f"{spec.in_channels}x{spec.input_size}x{spec.input_size}."
        ),
        f"- Classes ({len(bundle.label_set)}): {', '.join(bundle.label_set.classes)}.",
        (
            f"- Trained on the train split of `{info.data}`, best epoch selected on {validation} "
            f"({train_metrics['monitor']}), temperature {bundle.temperature:.3f} fitted on the same images"
            + (
                " plus one copy of each under the training augmentation (`calibrate_on: augmented`). "
                if train_metrics.get("calibrated_on") == "augmented"
                else ". "
            )
            + "The test split was used for nothing but these figures."
        ),
        f"- Training: {train_metrics['epochs_run']} epochs, best epoch {train_metrics['best_epoch']}, "
        f"{train_metrics['train_seconds'] / 60:.0f} minutes on "
        + _where_trained(info, train_metrics)
        + (f", starting from the weights in `{_weights_name(spec.pretrained)}`" if spec.pretrained else "")
        + (
            f"; the final weights are {train_metrics['interpolate']:g} of the best fine-tuned ones plus "
            f"{1 - train_metrics['interpolate']:g} of those starting weights (WiSE-FT)"
            if "interpolate" in train_metrics
            else ""
        )
        + (
            f", distilled from `{info.teacher}` at temperature {info.distill_temperature} with weight "
            f"{info.distill_weight}"
            if info.teacher
            else ""
        )
        + ("; the training time of those models is not included." if spec.pretrained or info.teacher else "."),
        (
            f"- Reproduce: `{command or 'ferlab train <config>'}` then "
            f"`ferlab runs card --model {run_dir} --data {data}{f' --dedup {dedup}' if dedup else ''} --out {out}`."
        ),
        "",
        "## Test results",
        "",
        (
            f"Accuracy **{100 * all_metrics['accuracy']:.2f}%** on {all_metrics['samples']} test images"
            + (
                " as served, each face averaged with its mirror image (`train.tta: flip`; "
                if summary["served_tta"] == "flip"
                else " ("
            )
            + "test-time augmentation: "
            + ", ".join(
                f"{100 * metrics['accuracy']:.2f}% {TTA_WORDS[method]}" for method, metrics in summary["tta"].items()
            )
            + ")."
        ),
    ]
    if "deduplicated" in summary:
        d = summary["deduplicated"]
        lines.append(
            f"Without the {d['removed']} test images that have a near-copy in training: accuracy "
            f"**{100 * d['accuracy']:.2f}%** on {d['samples']} images."
        )
        if "near_copies" in summary:
            lines.append(
                f"Those {d['removed']} near-copies alone score {100 * summary['near_copies']['accuracy']:.2f}%: "
                "overlap between training and test images inflates a score."
            )
    lines += [
        (
            f"Calibration: ECE {all_metrics['ece_uncalibrated']:.3f} before and {all_metrics['ece']:.3f} "
            "after temperature scaling."
        ),
        "",
        metrics_table(all_metrics),
        "",
        "## Speed (measured when this card was written)",
        "",
        f"Classification only, default backend: {speed_1:.0f} faces/s at batch 1, {speed_64:.0f} faces/s at batch 64.",
        "",
        "## Training config",
        "",
        "```yaml",
        config_text.rstrip(),
        "```",
        "",
        f"Full evaluation report: `{eval_dir / 'report.md'}` (confusion matrix, ROC, reliability, Grad-CAM).",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return summary


def _where_trained(info: BundleInfo, train_metrics: dict[str, Any]) -> str:
    """`2 CPU threads`, `NVIDIA H200 (cuda:0)` or `2 processes on NVIDIA H200 (cuda:0)`."""
    if info.device in (None, "cpu"):
        threads = train_metrics.get("threads")
        where = "the CPU" if threads is None else f"{threads} CPU thread{'' if threads == 1 else 's'}"
    else:
        where = f"{info.device_name or info.device} ({info.device})"
    return f"{info.world_size} processes on {where}" if info.world_size > 1 else where


def _weights_name(pretrained: str) -> str:
    """A project path as given, an installed package's file by its name: no one's home folder on a card."""
    path = Path(pretrained)
    return path.name if path.is_absolute() else pretrained
