"""Model cards: what a shipped model is, how it was made, and how well it does, measured.

Every figure on a card comes from the run folder or is measured when the card is written,
by one command (`ferlab runs card`), so a card can always be regenerated.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferlab.evaluation.evaluator import EvaluationReport
from ferlab.evaluation.report import run_evaluation
from ferlab.inference.predictor import Predictor
from ferlab.models.bundle import load_bundle
from ferlab.models.prior import DEFAULT_PRIOR
from ferlab.models.record import ModelRecord, Training


def classification_speed(predictor: Predictor, batch: int, seconds: float = 3.0) -> float:
    """Faces per second through the predictor's backend at one batch size (detection excluded)."""
    faces = {(size, channels): np.zeros((batch, size, size, channels), np.uint8) for size, channels in predictor.inputs}
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


@dataclass
class CardFacts:
    """Everything a model card states: read from the run folder, or measured when it is written."""

    title: str
    run_dir: Path
    data: Path
    out: Path
    dedup: Path | None
    command: str | None
    """The training command the card quotes (default: `ferlab train <config>`)."""
    record: ModelRecord
    parameters: int
    train_metrics: dict[str, Any]
    """The run's metrics.json."""
    config_text: str
    """The run's config.yaml, shown as it is."""
    report: EvaluationReport
    eval_dir: Path
    speed_1: float
    """Faces per second classified at batch 1 (and at batch 64 below)."""
    speed_64: float


def card_facts(
    run_dir: Path, data: Path, out: Path, dedup: Path | None = None, name: str | None = None, command: str | None = None
) -> CardFacts:
    """Evaluate the run's model on the test split, time it, and gather what its card says."""
    bundle = load_bundle(run_dir)
    eval_dir, report = run_evaluation(
        run_dir,
        data,
        split="test",
        dedup=dedup,
        tta=("none", "flip", "tencrop"),  # the one the model is served with is the headline
        out=run_dir / "eval" / f"{Path(data).name}-test",
    )  # the card's report stays with its run
    predictor = Predictor(bundle)
    return CardFacts(
        title=name or run_dir.name,
        run_dir=run_dir,
        data=data,
        out=out,
        dedup=dedup,
        command=command,
        record=bundle.record,
        parameters=sum(p.numel() for p in bundle.model.parameters()),
        train_metrics=json.loads((run_dir / "metrics.json").read_text()),
        config_text=(run_dir / "config.yaml").read_text(),
        report=report,
        eval_dir=eval_dir,
        speed_1=classification_speed(predictor, 1),
        speed_64=classification_speed(predictor, 64),
    )


def render_card(facts: CardFacts) -> str:
    """The Markdown model card of `card_facts`."""
    record, info, train_metrics, report = facts.record, facts.record.training, facts.train_metrics, facts.report
    validation = (
        f"the validation images with no near-copy in training (`{info.val_clean}`)"
        if info.val_clean
        else "the validation split"
    )
    all_metrics = report.all
    lines = [
        f"# Model card: {facts.title}",
        "",
        (
            f"- Architecture: `{record.arch}` {dict(record.arch_options)}, {facts.parameters:,} parameters, input "
            f"{record.in_channels}x{record.input_size}x{record.input_size}."
        ),
        f"- Classes ({record.num_classes}): {', '.join(record.classes)}.",
        (
            f"- Trained on the train split of `{record.training_data}`, best epoch selected on {validation} "
            f"({train_metrics['monitor']}), temperature {record.temperature:.3f} fitted on the same images"
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
        + (f", starting from the weights in `{_weights_name(record.pretrained)}`" if record.pretrained else "")
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
        + ("; the training time of those models is not included." if record.pretrained or info.teacher else "."),
        (
            f"- Reproduce: `{facts.command or 'ferlab train <config>'}` then "
            f"`ferlab runs card --model {facts.run_dir} --data {facts.data}"
            f"{f' --dedup {facts.dedup}' if facts.dedup else ''} --out {facts.out}`."
        ),
        "",
        "## Test results",
        "",
        (
            f"Accuracy **{100 * all_metrics.accuracy:.2f}%** on {all_metrics.samples} test images"
            + (
                " as served, each face averaged with its mirror image (`train.tta: flip`; "
                if report.served_tta == "flip"
                else " ("
            )
            + "test-time augmentation: "
            + ", ".join(f"{100 * metrics.accuracy:.2f}% {TTA_WORDS[method]}" for method, metrics in report.tta.items())
            + ")."
        ),
    ]
    if report.deduplicated is not None:
        lines.append(
            f"Without the {report.removed} test images that have a near-copy in training: accuracy "
            f"**{100 * report.deduplicated.accuracy:.2f}%** on {report.deduplicated.samples} images."
        )
        if report.near_copies is not None:
            lines.append(
                f"Those {report.removed} near-copies alone score {100 * report.near_copies.accuracy:.2f}%: "
                "overlap between training and test images inflates a score."
            )
    if report.default_prior is not None:
        served = report.default_prior
        lines.append(
            f"With the default class prior (`--prior {DEFAULT_PRIOR:g}`, docs/models.md; the "
            "figures above are at the training prior, `--prior train`): accuracy "
            f"**{100 * served.accuracy:.2f}%**, macro-F1 {served.macro_f1:.3f}, recall "
            + ", ".join(f"{name} {100 * figures.recall:.0f}%" for name, figures in served.per_class.items())
            + "."
        )
    lines += [
        (
            f"Calibration: ECE {all_metrics.ece_uncalibrated:.3f} before and {all_metrics.ece:.3f} "
            "after temperature scaling."
        ),
        "",
        all_metrics.to_markdown(),
        "",
        "## Speed (measured when this card was written)",
        "",
        (
            f"Classification only, default backend: {facts.speed_1:.0f} faces/s at batch 1, "
            f"{facts.speed_64:.0f} faces/s at batch 64."
        ),
        "",
        "## Training config",
        "",
        "```yaml",
        facts.config_text.rstrip(),
        "```",
        "",
        f"Full evaluation report: `{facts.eval_dir / 'report.md'}` (confusion matrix, ROC, reliability, Grad-CAM).",
        "",
    ]
    return "\n".join(lines)


def write_card(
    run_dir: Path, data: Path, out: Path, dedup: Path | None = None, name: str | None = None, command: str | None = None
) -> EvaluationReport:
    """Evaluate the run's model on the test split and write its Markdown model card: the facts
    first (`card_facts`), then their rendering (`render_card`)."""
    facts = card_facts(run_dir, data, out, dedup, name, command)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_card(facts))
    return facts.report


def _where_trained(info: Training, train_metrics: dict[str, Any]) -> str:
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
