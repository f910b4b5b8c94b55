"""`ferlab evaluate` and `ferlab explain`: what a model gets right, and where it looks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ferlab.cli.main import user_errors


@user_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="Run folder or model.pt.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset to evaluate on (any layout ferlab reads).")],
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "test",
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: RUN/eval/<data>-<split>).")] = None,
    format: Annotated[str, typer.Option("--format", help="Dataset layout (auto-detected).")] = "auto",
    ferplus_labels: Annotated[Optional[Path], typer.Option("--ferplus-labels", help="fer2013new.csv for a fer2013.csv.")] = None,
    ferplus_majority: Annotated[str, typer.Option("--ferplus-majority", help="strict or plurality.")] = "strict",
    tta: Annotated[
        Optional[list[str]], typer.Option("--tta", help="Also report this test-time augmentation: flip or tencrop "
                                          "(repeat the option for both).")
    ] = None,
    dedup: Annotated[
        Optional[Path], typer.Option("--dedup", help="Clean list from `ferlab data audit --write-clean-split`: "
                                     "also report metrics without near-copies of training images.")
    ] = None,
    no_gradcam: Annotated[bool, typer.Option("--no-gradcam", help="Skip the Grad-CAM example grid.")] = False,
) -> None:
    """Accuracy, per-class report, confusion matrix, ROC/AUC, calibration, Grad-CAM examples and report.md."""
    from ferlab.evaluation.evaluator import metrics_table
    from ferlab.evaluation.report import run_evaluation

    out_dir, summary = run_evaluation(
        model, data, split=split, out=out, data_format=format, ferplus_labels=ferplus_labels,
        ferplus_majority=ferplus_majority, tta=tuple(tta or ()), dedup=dedup, gradcam_examples=not no_gradcam,  # type: ignore[arg-type]
    )
    for note in summary["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(metrics_table(summary["all"]))
    if "deduplicated" in summary:
        d = summary["deduplicated"]
        typer.echo(f"without near-copies of training images ({d['removed']} removed): accuracy {100 * d['accuracy']:.2f}%")
    for method, metrics in summary.get("tta", {}).items():
        typer.echo(f"with {method} TTA: accuracy {100 * metrics['accuracy']:.2f}%")
    typer.echo(f"wrote {out_dir / 'report.md'}")


@user_errors
def explain(
    image: Annotated[Path, typer.Argument(help="A photo or a face crop.")],
    model: Annotated[Path, typer.Option("--model", help="Run folder or model.pt.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the overlay PNG.")] = Path("gradcam.png"),
    class_name: Annotated[Optional[str], typer.Option("--class", help="Explain this class (default: the predicted one).")] = None,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="The image is a face crop: explain it whole.")] = False,
) -> None:
    """Grad-CAM overlay on the largest face (or the whole crop) for the predicted or named class."""
    from PIL import Image

    from ferlab.data.imageio import as_rgb
    from ferlab.evaluation.gradcam import gradcam, overlay
    from ferlab.inference.detection import create_detector
    from ferlab.inference.preprocess import crop_face, whole_image_face
    from ferlab.models.bundle import load_bundle

    bundle = load_bundle(model)
    spec = bundle.spec
    rgb = as_rgb(image)
    faces = [] if no_detect else create_detector().detect(rgb)
    if faces:
        face = crop_face(rgb, faces[0], spec.input_size, spec.in_channels)
        picture = crop_face(rgb, faces[0], max(spec.input_size, faces[0].box[2]), 3)
    else:
        if not no_detect:
            typer.echo("no face found: explaining the whole image as a face crop")
        face, picture = whole_image_face(rgb, spec.input_size, spec.in_channels), rgb
    class_index = bundle.label_set.index(class_name) if class_name else None
    heatmap, explained = gradcam(bundle, face, class_index)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(picture, heatmap)).save(out)
    typer.echo(f"{bundle.label_set.classes[explained]}: wrote {out}")
