"""`ferlab evaluate`, `ferlab bench` and `ferlab explain`: what a model gets right, and where it looks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ferlab.cli.common import user_errors
from ferlab.cli.predict import TtaOpt, served_option
from ferlab.errors import FerlabError

if TYPE_CHECKING:
    from ferlab.inference.engine import TTA


@user_errors
def evaluate(
    model: Annotated[str, typer.Argument(help="Shipped model name (ferplus8, ...), run folder or model.pt.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset to evaluate on (any layout ferlab reads).")],
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
            help="Also report this test-time augmentation: none, flip or tencrop (repeat the option for more).",
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
    detect: Annotated[
        bool,
        typer.Option(
            "--detect",
            help="Photos, not crops: detect, align and classify the largest face in "
            "each image file, as `ferlab predict` does.",
        ),
    ] = False,
    detector: Annotated[
        str,
        typer.Option(
            "--detector",
            help="With --detect: auto (yunet), yunet, yunet-960 (more small faces, twice the time), haar or mediapipe.",
        ),
    ] = "auto",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or mps: where the network runs.")] = "cpu",
) -> None:
    """Accuracy, per-class report, confusion matrix, ROC/AUC, calibration, Grad-CAM examples and report.md."""
    import ferlab
    from ferlab.evaluation.evaluator import metrics_table

    out_dir, summary = ferlab.evaluate(
        model,
        data,
        split=split,
        out=out,
        data_format=format,
        ferplus_labels=ferplus_labels,
        ferplus_majority=ferplus_majority,
        tta=tuple(cast("list[TTA]", tta or [])),  # the evaluator refuses unknown names
        dedup=dedup,
        gradcam_examples=not no_gradcam,
        detect=detect,
        detector=detector,
        device=device,
    )
    typer.echo(f"{summary['model']} on {data}: {summary['scored']}")
    typer.echo(f"protocol: {summary['protocol']}")
    for note in summary["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(metrics_table(summary["all"]))
    if "deduplicated" in summary:
        d = summary["deduplicated"]
        typer.echo(
            f"without near-copies of training images ({d['removed']} removed): accuracy {100 * d['accuracy']:.2f}%"
        )
    for method, metrics in summary.get("tta", {}).items():
        typer.echo(f"with {method} TTA: accuracy {100 * metrics['accuracy']:.2f}%")
    typer.echo(f"wrote {out_dir / 'report.md'}")


@user_errors
def bench(
    models: Annotated[list[str], typer.Argument(help="Shipped model names, run folders or model.pt files.")],
    data: Annotated[list[Path], typer.Option("--data", help="A dataset (repeat for several).")],
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="auto (a dataset's own test split, or every image of one without splits), train, val, test or all.",
        ),
    ] = "auto",
    detect: Annotated[
        bool, typer.Option("--detect", help="Photos, not crops: the full detect-align-classify pipeline.")
    ] = False,
    detector: Annotated[
        str,
        typer.Option(
            "--detector",
            help="With --detect: auto (yunet), yunet, yunet-960 (more small faces, twice the time), haar or mediapipe.",
        ),
    ] = "auto",
    tta: TtaOpt = "auto",
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the table (.md) and the figures (.json).")
    ] = None,
) -> None:
    """Every model on every dataset: one table of accuracy, macro-F1 and recall per class."""
    import json

    import ferlab
    from ferlab.evaluation.report import benchmark_table

    if out is not None:
        if out.is_dir():
            raise FerlabError(f"--out {out} is a folder; give a file prefix such as {out / 'bench'}")
        out = out.with_suffix("") if out.suffix.lower() in (".md", ".json") else out
    rows = ferlab.bench(models, data, split=split, detect=detect, detector=detector, tta=served_option(tta))
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
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Shipped model name, run folder or model.pt (default: $FERLAB_MODEL, else ferplus8-robust-40).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the overlay PNG.")] = Path("gradcam.png"),
    class_name: Annotated[
        str | None, typer.Option("--class", help="Explain this class (default: the predicted one).")
    ] = None,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="The image is a face crop: explain it whole.")] = False,
) -> None:
    """Grad-CAM overlay on the largest face (or the whole crop) for the predicted or named class."""
    from PIL import Image

    from ferlab.evaluation.explain import explain_image
    from ferlab.inference.predictor import load

    if out.is_dir() or out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise FerlabError(f"--out {out}: give an image file ending in .png, .jpg or .webp")
    predictor = load(model, backend="torch")  # Grad-CAM needs torch; no ONNX session or export for one image
    explanation = explain_image(predictor, image, class_name, detect=not no_detect)
    if explanation.note:
        typer.echo(explanation.note)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(explanation.image).save(out)
    typer.echo(f"{explanation.label}: wrote {out}")
