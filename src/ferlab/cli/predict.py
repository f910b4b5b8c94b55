"""`ferlab predict`, `video`, `webcam` and `export`: the model on real photos and video."""

from __future__ import annotations

import glob
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ferlab.cli.common import echo, user_errors
from ferlab.cli.options import (
    BackendOpt,
    DetectOpt,
    DetectorOpt,
    DeviceOpt,
    ModelOpt,
    OldModelArg,
    PrecisionOpt,
    PriorOpt,
    TtaOpt,
    model_or_old_argument,
)
from ferlab.errors import FerlabError
from ferlab.inference.choices import DEFAULT_BACKEND, DEFAULT_DETECTOR, DEFAULT_PRECISION
from ferlab.inference.tracking import SMOOTHING
from ferlab.models.choices import DEFAULT_DEVICE, DEFAULT_TTA
from ferlab.models.shipped import FAST_MODEL

if TYPE_CHECKING:
    from ferlab.inference.predictor import Predictor

FastOpt = Annotated[
    bool,
    typer.Option("--fast", help=f"The fast live-video model ({FAST_MODEL}; its card has its accuracy and speed)."),
]
NO_FACE_HINT = "try --no-detect if it is already a face crop"


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (recursively, image files only) and glob patterns, in a stable order."""
    from ferlab.data.imageio import image_extensions

    extensions = image_extensions()
    paths: list[Path] = []
    for item in items:
        pattern = any(ch in item for ch in "*?[") and not Path(item).exists()  # "photo[1].jpg" is a name
        matches = sorted(glob.glob(item, recursive=True)) if pattern else [item]
        if not matches:
            echo(f"skip: {item}: nothing matches", fg=typer.colors.YELLOW, err=True)
        for match in matches:
            path = Path(match)
            if path.is_dir():  # hidden files are not photos (macOS leaves ._IMG.jpg metadata beside each)
                # a dangling symlink is kept, so that it is reported as unreadable as at the top level
                found = [
                    p
                    for p in path.rglob("*")
                    if (p.is_file() or (p.is_symlink() and not p.exists())) and not p.name.startswith(".")
                ]
                paths += sorted(p for p in found if p.suffix.lower() in extensions)
                heic = sum(p.suffix.lower() in (".heic", ".heif") for p in found)
                if heic and ".heic" not in extensions:
                    typer.secho(
                        f"skip: {heic} HEIC photo(s) in {path}: convert them to JPEG", fg=typer.colors.YELLOW, err=True
                    )
            else:
                paths.append(path)
    return paths


@user_errors
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    model: ModelOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write results to .csv or .json.")] = None,
    annotate: Annotated[
        Path | None, typer.Option("--annotate", help="Folder for copies with boxes and labels.")
    ] = None,
    detect: DetectOpt = True,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    backend: BackendOpt = DEFAULT_BACKEND,
    tta: TtaOpt = DEFAULT_TTA,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per classification batch.")] = 16,
    precision: PrecisionOpt = DEFAULT_PRECISION,
    prior: PriorOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Threads that decode, detect and classify, each with its own model (default: the CPU count).",
        ),
    ] = None,
) -> None:
    """Detect faces and classify their expressions; one row per face, classes sorted by probability."""
    import time

    from PIL import Image
    from tqdm import tqdm

    from ferlab.data.paths import shown
    from ferlab.inference.batch import predict_files
    from ferlab.inference.cpus import usable_cpus
    from ferlab.inference.predictor import load
    from ferlab.inference.results import Record, write_records

    paths = expand_inputs(inputs)
    if not paths:
        raise FerlabError("no input images")
    if out is not None:
        check_results_file(out, paths)
    options = {
        "detector": detector,
        "backend": backend,
        "tta": tta,
        "precision": precision,
        "prior": prior,
        "device": device,
    }
    predictor = load(model, **options)  # fails here on a bad option, once
    spare = [predictor]

    def make_predictor() -> Predictor:
        return spare.pop() if spare else load(model, **options)

    records: list[Record] = []
    annotated: set[str] = set()
    failures = 0
    started = time.perf_counter()
    results = predict_files(
        paths,
        make_predictor,
        workers=workers or usable_cpus(),
        chunk=batch,
        detect=detect,
        keep_images=annotate is not None,
    )
    try:
        for result in tqdm(results, total=len(paths), unit="image", disable=None, leave=False):
            path, faces, rgb = result.path, result.faces, result.rgb
            file_name = shown(path)  # a name that is not UTF-8, escaped: printable, and the table can hold it
            if faces is None:
                failures += 1
                echo(f"skip: {shown(str(result.error))}", fg=typer.colors.YELLOW, err=True)
                records.append({"file": file_name, "face": None, "reason": f"not read: {shown(str(result.error))}"})
                continue
            if not faces:
                echo(f"{file_name}: no face found ({NO_FACE_HINT})")
            for number, face in enumerate(faces, start=1):
                top3 = ", ".join(f"{name} {p:.2f}" for name, p in list(face.probabilities.items())[:3])
                flag = " (uncertain)" if face.uncertain else ""
                echo(f"{file_name} face {number} at {face.box}: {face.label} {face.confidence:.2f}{flag} [{top3}]")
            records += faces.to_records(file_name)
            if annotate is not None and rgb is not None:
                canvas = faces.draw(rgb)
                annotate.mkdir(parents=True, exist_ok=True)
                name, copy = f"{path.stem}.annotated.png", 1
                while name in annotated:  # photos with the same name in different folders
                    name, copy = f"{path.stem}.{copy}.annotated.png", copy + 1
                annotated.add(name)
                Image.fromarray(canvas).save(annotate / name)
    finally:  # an interrupted or failed run still writes the rows it has (Ctrl-C included)
        if out is not None:
            write_records(records, out, predictor.classes)
            typer.echo(f"wrote {out} ({len(records)} rows)")
    seconds = time.perf_counter() - started
    if failures == len(paths):  # no speed to report: nothing was classified
        raise FerlabError(f"none of the {len(paths)} input(s) could be read")
    typer.secho(f"{len(paths)} images in {seconds:.1f} s: {len(paths) / max(seconds, 1e-9):.1f} images/s", err=True)
    if failures:
        typer.secho(f"{failures} of {len(paths)} input(s) could not be read", fg=typer.colors.YELLOW, err=True)


def check_results_file(out: Path, inputs: list[Path]) -> None:
    """Refuse an --out that cannot take the results before any image is processed, so a long run
    never ends in a lost table, and never one that is an input photo."""
    if out.is_dir():
        raise FerlabError(f"--out {out} is a folder; give a .csv or .json file")
    if out.suffix.lower() not in (".csv", ".json"):
        raise FerlabError(f"--out {out}: give a file ending in .csv or .json")
    if any(out.resolve() == path.resolve() for path in inputs):
        raise FerlabError(f"--out {out} is one of the input images; give another file")
    parent = next((folder for folder in out.absolute().parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise FerlabError(f"--out {out}: {parent} is a file, not a folder")
    if parent is not None:  # try it: permissions, a read-only disk, root's own limits (/proc)
        try:
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError as exc:
            raise FerlabError(f"--out {out}: {parent} cannot be written ({exc.strerror or exc})") from None


def live_predictor(
    model: str | None,
    fast: bool,
    detector: str,
    backend: str,
    precision: str,
    tta: str,
    prior: str | None,
    device: str,
) -> Predictor:
    """The predictor of `video` and `webcam`: --model wins; --fast picks the shipped live-video
    model; neither: $FERLAB_MODEL or the default."""
    from ferlab.inference.predictor import load

    if model and fast:
        raise FerlabError(f"--model {model} and --fast name two models: give one")
    return load(
        FAST_MODEL if fast else model,
        detector=detector,
        backend=backend,
        precision=precision,
        tta=tta,
        prior=prior,
        device=device,
    )


@user_errors
def video(
    file: Annotated[Path, typer.Argument(help="A video file OpenCV can read.")],
    model: ModelOpt = None,
    fast: FastOpt = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for frames.csv, annotated.mp4 and emotions.png.")] = Path(
        "video-out"
    ),
    every: Annotated[int, typer.Option("--every", help="Analyse every N-th frame (others reuse the last result).")] = 1,
    smoothing: Annotated[float, typer.Option("--smoothing", help="Temporal smoothing weight in [0, 1).")] = SMOOTHING,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    backend: BackendOpt = DEFAULT_BACKEND,
    precision: PrecisionOpt = DEFAULT_PRECISION,
    tta: TtaOpt = DEFAULT_TTA,
    prior: PriorOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
) -> None:
    """Per-frame CSV, annotated video and an emotion-over-time plot, with faces tracked across frames."""
    from ferlab.inference.video import process_video

    if not 0 <= smoothing < 1:
        raise FerlabError(f"--smoothing must be at least 0 and below 1, got {smoothing:g}")
    predictor = live_predictor(model, fast, detector, backend, precision, tta, prior, device)
    summary = process_video(predictor, file, out, every=every, smoothing=smoothing)
    typer.echo(
        f"{summary.frames} frames, {summary.processed} analysed, faces in {summary.frames_with_faces}; "
        f"{summary.frames / max(summary.seconds, 1e-9):.1f} frames/s; wrote " + ", ".join(map(str, summary.files))
    )


@user_errors
def webcam(
    camera: Annotated[int, typer.Option("--camera", help="Camera index.")] = 0,
    model: ModelOpt = None,
    fast: FastOpt = False,
    every: Annotated[int, typer.Option("--every", help="Analyse every N-th frame.")] = 1,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    backend: BackendOpt = DEFAULT_BACKEND,
    precision: PrecisionOpt = DEFAULT_PRECISION,
    tta: TtaOpt = DEFAULT_TTA,
    prior: PriorOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
) -> None:
    """A live window with boxes, labels, probability bars and fps (needs a camera and a display)."""
    from ferlab.inference.video import run_webcam

    predictor = live_predictor(model, fast, detector, backend, precision, tta, prior, device)
    run_webcam(predictor, camera=camera, every=every)


@user_errors
def export(
    model: ModelOpt = None,
    format: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output file (default: ./<model>.onnx in the working directory), or an existing folder: "
            "there the export is named by the weights' digest, with its record, where predict finds it "
            "(with --int8 always a folder; default: the ONNX cache).",
        ),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Also write a static int8 copy, calibrated on training faces; "
            "predict, serve and the apps then run it (precision auto).",
        ),
    ] = False,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="With --int8: the dataset whose train split calibrates it.")
    ] = None,
    head: Annotated[
        str,
        typer.Option(
            "--head",
            help="first: the model as served (ONNX). second: a two-head run's second (FER2013) head, written "
            "as a model.pt of its own at --out (a .pt file or a folder; temperature 1.0, not fitted); export "
            "that to ONNX with another `ferlab export --model`.",
        ),
    ] = "first",
    old_model: OldModelArg = None,
) -> None:
    """Export a model for other runtimes (ONNX); checks the export against torch before reporting success."""
    import ferlab

    model = model_or_old_argument(model, old_model, "export")
    if head not in ("first", "second"):
        raise FerlabError(f"--head must be first or second, got {head!r}")
    if head == "second":
        if int8:
            raise FerlabError("--head second writes a model.pt; export that with --int8 afterwards")
        from ferlab.models.bundle import write_second_head
        from ferlab.models.shipped import default_model

        written, record = write_second_head(model or default_model(), out)
        typer.echo(
            f"wrote {written}: {record.name}, classes {', '.join(record.classes)} (label set {record.label_set}), "
            "temperature 1.0 (not fitted)"
        )
        return
    if int8 and calibration is None:  # said in the command's words; ferlab.export checks it too
        raise FerlabError("--int8 needs --calibration DATA: training faces set the int8 scales")
    from ferlab.models.shipped import default_model

    result = ferlab.export(model or default_model(), out, format=format, int8=int8, calibration=calibration)
    if result.int8 is not None:
        typer.echo(
            f"wrote {result.onnx} and {result.int8} "
            f"(int8, calibrated on {result.calibration_faces} training faces of {calibration})"
        )
        return
    typer.echo(
        f"wrote {result.onnx} (max |logit difference| vs torch on random faces: {result.max_difference:.2e}); "
        f"classes {', '.join(result.classes)}, temperature {result.temperature:.3f}"
    )


@user_errors
def models() -> None:
    """The models that ship with ferlab: classes, input, headline test figures, license (loads none of them)."""
    import ferlab
    from ferlab.models.shipped import DEFAULT_MODEL, shipped_file

    for name, record in ferlab.list_models().items():
        default = " (default)" if name == DEFAULT_MODEL else ""
        typer.echo(f"{name}{default}: {record.description}")
        typer.echo(f"    classes ({record.num_classes}): {', '.join(record.classes)}; input {record.input_text}")
        if record.headline is not None:
            h = record.headline
            typer.echo(f"    {100 * h.accuracy:.2f} % accuracy, macro-F1 {h.macro_f1:.3f} on {h.test_set}")
        typer.echo(f"    license: {record.license}; card: {shipped_file(record, 'card')}")
