"""`ferlab evaluate`, `ferlab bench` and `ferlab explain`: what a model gets right, and where it looks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferlab.cli.common import user_errors
from ferlab.cli.options import (
    DetectOpt,
    DetectorOpt,
    DeviceOpt,
    ModelOpt,
    ModelsOpt,
    OldModelArg,
    PriorOpt,
    TtaOpt,
    deprecated,
    model_or_old_argument,
)
from ferlab.errors import FerlabError
from ferlab.inference.choices import DEFAULT_DETECTOR
from ferlab.models.choices import DEFAULT_DEVICE, DEFAULT_TTA, TTA_CHOICES, chosen_tta
from ferlab.models.prior import DEFAULT_PRIOR


@user_errors
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Dataset to evaluate on (any layout ferlab reads).")],
    model: ModelOpt = None,
    split: Annotated[
        str, typer.Option("--split", help="train, val, test, or all (every image, whatever its split).")
    ] = "test",
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: ./eval/<model>-<data>-<split>/).")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="Dataset layout (auto-detected).")] = "auto",
    ferplus_labels: Annotated[
        Path | None, typer.Option("--ferplus-labels", help="fer2013new.csv for a fer2013.csv.")
    ] = None,
    ferplus_majority: Annotated[str, typer.Option("--ferplus-majority", help="strict or plurality.")] = "strict",
    tta: Annotated[
        list[str] | None,
        typer.Option(
            "--tta",
            help=f"Also report this test-time augmentation: {', '.join(TTA_CHOICES)} (repeatable; "
            "the main figures are the model as served, auto).",
        ),
    ] = None,
    dedup: Annotated[
        Path | None,
        typer.Option(
            "--dedup",
            help="Clean list from `ferlab data audit --write-clean-split`: "
            "also report metrics without near-copies of training images.",
        ),
    ] = None,
    no_gradcam: Annotated[bool, typer.Option("--no-gradcam", help="Skip the Grad-CAM example grid.")] = False,
    detect: DetectOpt = False,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    device: DeviceOpt = DEFAULT_DEVICE,
    old_model: OldModelArg = None,
) -> None:
    """Accuracy, per-class report, confusion matrix, ROC/AUC, calibration, Grad-CAM examples and report.md.

    The images are face crops unless --detect sends each one through the photo pipeline (detect,
    align and classify the largest face), as `ferlab predict` does.
    """
    import ferlab
    from ferlab.models.shipped import default_model

    model = model_or_old_argument(model, old_model, "evaluate")
    also = [chosen_tta(method) for method in tta or []]  # auto is the served one, reported anyway
    out_dir, report = ferlab.evaluate(
        model or default_model(),
        data,
        split=split,
        out=out,
        data_format=format,
        ferplus_labels=ferplus_labels,
        ferplus_majority=ferplus_majority,
        tta=tuple(method for method in also if method is not None),
        dedup=dedup,
        gradcam_examples=not no_gradcam,
        detect=detect,
        detector=detector,
        device=device,
        progress=True,
    )
    typer.echo(f"{report.model} on {data}: {report.scored}")
    typer.echo(f"protocol: {report.protocol}")
    for note in report.notes:
        typer.echo(f"note: {note}")
    typer.echo(report.all.to_markdown())
    if report.deduplicated is not None:
        typer.echo(
            f"without near-copies of training images ({report.removed} removed): "
            f"accuracy {100 * report.deduplicated.accuracy:.2f}%"
        )
    for method, metrics in report.tta.items():
        typer.echo(f"with {method} TTA: accuracy {100 * metrics.accuracy:.2f}%")
    if report.default_prior is not None:
        typer.echo(
            f"at the default class prior ({DEFAULT_PRIOR:g}, as predict serves): accuracy "
            f"{100 * report.default_prior.accuracy:.2f}%, macro-F1 {report.default_prior.macro_f1:.3f}"
        )
    typer.echo(f"wrote {out_dir / 'report.md'}")


@user_errors
def bench(
    data: Annotated[list[Path], typer.Option("--data", help="A dataset (repeat for several).")],
    model: ModelsOpt = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="auto (a dataset's own test split, or every image of one without splits), train, val, test or all.",
        ),
    ] = "auto",
    detect: DetectOpt = False,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    tta: TtaOpt = DEFAULT_TTA,
    device: DeviceOpt = DEFAULT_DEVICE,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the table (.md) and the figures (.json).")
    ] = None,
    old_models: Annotated[list[str] | None, typer.Argument(hidden=True, help="Old place of --model.")] = None,
) -> None:
    """Every model on every dataset: one table of accuracy, macro-F1 and recall per class."""
    import json

    import ferlab
    from ferlab.evaluation.report import benchmark_table
    from ferlab.models.shipped import default_model

    if old_models:
        if model:
            raise FerlabError("give the models once: --model NAME for each, not also before the options")
        deprecated("`ferlab bench MODEL...`", "`ferlab bench --model MODEL` (repeatable)")
    models = model or old_models or [default_model()]

    if out is not None:
        if out.is_dir():
            raise FerlabError(f"--out {out} is a folder; give a file prefix such as {out / 'bench'}")
        out = out.with_suffix("") if out.suffix.lower() in (".md", ".json") else out
    rows = ferlab.bench(
        models, data, split=split, detect=detect, detector=detector, tta=chosen_tta(tta), device=device, progress=True
    )
    for row in rows:
        for note in row["notes"]:
            typer.echo(f"note ({row['model']} on {row['data']}): {note}")
    table = benchmark_table(rows)
    typer.echo(table)
    if out is not None:
        markdown, figures = out.with_name(f"{out.name}.md"), out.with_name(f"{out.name}.json")  # results.v2 keeps .v2
        out.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table + "\n")
        figures.write_text(json.dumps(rows, indent=1))
        typer.echo(f"wrote {markdown} and {figures}")


@user_errors
def explain(
    image: Annotated[Path, typer.Argument(help="A photo or a face crop.")],
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the overlay PNG.")] = Path("gradcam.png"),
    class_name: Annotated[
        str | None, typer.Option("--class", help="Explain this class (default: the predicted one).")
    ] = None,
    detect: DetectOpt = True,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    tta: TtaOpt = DEFAULT_TTA,
    prior: PriorOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
) -> None:
    """Grad-CAM on every face (or the whole crop) for the predicted or named class, each face labelled.

    Grad-CAM runs on torch in fp32, so explain has no --backend or --precision.
    """
    from PIL import Image

    from ferlab.evaluation.explain import explain_faces, explanation_panel
    from ferlab.inference.predictor import load

    if out.is_dir() or out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise FerlabError(f"--out {out}: give an image file ending in .png, .jpg or .webp")
    # Grad-CAM needs torch; no ONNX session or export for one image
    predictor = load(model, backend="torch", detector=detector, tta=tta, prior=prior, device=device)
    explanations = explain_faces(predictor, image, class_name, detect=detect)
    for number, explanation in enumerate(explanations, start=1):
        typer.echo(f"face {number} at {explanation.face.box}: {explanation.label} {explanation.score:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(explanation_panel(explanations)).save(out)
    typer.echo(f"wrote {out} ({len(explanations)} face{'' if len(explanations) == 1 else 's'})")
