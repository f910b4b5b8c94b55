"""Evaluation, cross-dataset label mapping, deduplicated metrics, TTA and Grad-CAM."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import GRACE_HOPPER, assert_names, blob_image, cli_error, fails_with, make_class_tree, write_image
from ferlab.cli.main import app
from ferlab.errors import FerlabError
from ferlab.evaluation.gradcam import gradcam
from ferlab.evaluation.report import run_evaluation
from ferlab.labels import LabelSet
from ferlab.models.bundle import ModelBundle, load_bundle
from ferlab.models.registry import available_models, create_model

runner = CliRunner()


@pytest.mark.slow
def test_evaluation_writes_every_figure_and_table(
    blob_model: Path, blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out_dir, report = run_evaluation(blob_model, blob_data, tta=("flip", "tencrop"))
    for name in (
        "metrics.json",
        "classification_report.md",
        "classification_report.txt",
        "confusion_matrix.png",
        "roc.png",
        "reliability.png",
        "gradcam_examples.png",
        "report.md",
    ):
        assert (out_dir / name).stat().st_size > 0, name
    assert out_dir == tmp_path / "eval" / f"{blob_model.name}-{blob_data.name}-test"  # the working directory
    metrics = report.all
    assert metrics.samples == 20 and metrics.accuracy > 0.8
    assert metrics.top2_accuracy >= metrics.accuracy
    assert all(row.auc is not None for row in metrics.per_class.values()) and metrics.per_class["sad"].support == 4
    assert sum(map(sum, metrics.confusion)) == 20 and sum(metrics.confusion[2]) == 4  # true sad faces: row 3
    assert list(report.tta) == ["flip", "tencrop"]
    assert all(0 <= m.accuracy <= 1 for m in report.tta.values())
    assert metrics.temperature == load_bundle(blob_model).record.temperature
    saved = json.loads((out_dir / "metrics.json").read_text())
    assert saved["all"]["accuracy"] == metrics.accuracy and saved["all"]["per_class"]["sad"]["support"] == 4
    assert set(saved["tta"]) == {"flip", "tencrop"} and saved["protocol"] == report.protocol
    assert report.to_markdown() + "\n" == (out_dir / "classification_report.md").read_text()
    report = (out_dir / "report.md").read_text()
    assert (
        f"![training curves]({os.path.relpath(blob_model / 'curves.png', out_dir)})" in report and "| angry |" in report
    )
    assert "split `test`, 20 of 100 images; 20 images scored" in report and "Protocol: face crops" in report


def test_deduplicated_metrics_leave_out_listed_copies(blob_model: Path, blob_data: Path, tmp_path: Path) -> None:
    sources = sorted(str(p.relative_to(blob_data)) for p in (blob_data / "test").rglob("*.png"))
    clean = tmp_path / "clean.txt"
    clean.write_text("# test images without a near-copy in train\n" + "\n".join(sources[5:]) + "\n")
    _, summary = run_evaluation(blob_model, blob_data, out=tmp_path / "eval", dedup=clean, gradcam_examples=False)
    assert summary.deduplicated is not None and summary.near_copies is not None
    assert summary.deduplicated.samples == 15 and summary.removed == 5 and summary.near_copies.samples == 5
    total = summary.all.accuracy * 20
    assert abs(summary.deduplicated.accuracy * 15 + summary.near_copies.accuracy * 5 - total) < 1e-6
    report = (tmp_path / "eval" / "classification_report.md").read_text()
    assert "Without near-copies" in report and "Only the test images that have a near-copy" in report
    assert "Only the test images that have a near-copy" in (tmp_path / "eval" / "report.md").read_text()

    val_sources = sorted(str(p.relative_to(blob_data)) for p in (blob_data / "val").rglob("*.png"))
    clean.write_text("\n".join(val_sources[3:]) + "\n")
    _, summary = run_evaluation(
        blob_model, blob_data, split="val", out=tmp_path / "val", dedup=clean, gradcam_examples=False
    )
    assert summary.near_copies is not None and summary.near_copies.samples == 3
    report = (tmp_path / "val" / "report.md").read_text()
    assert "## All val images" in report and "Only the val images that have a near-copy" in report


def test_cross_dataset_evaluation_keeps_shared_classes_and_says_so(blob_model: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    rng = np.random.default_rng(5)
    for name, label in (("angry", 0), ("happiness", 1), ("surprise", 2)):
        for i in range(6):
            write_image(other / "test" / name / f"{i}.png", blob_image(label, rng))
            write_image(other / "train" / name / f"{i}.png", blob_image(label, rng))
    _, summary = run_evaluation(blob_model, other, out=tmp_path / "eval", gradcam_examples=False)
    assert summary.classes == ("angry", "happy")
    assert summary.all.samples == 12
    dropped, missing = summary.notes  # the data's class the model lacks, the model's class the data lacks
    assert_names(dropped, "6 samples", "surprise")
    assert_names(missing, "sad")


def test_bad_inputs_give_clear_errors(blob_model: Path, blob_data: Path, tmp_path: Path) -> None:
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    shutil.copy(blob_model / "config.yaml", empty_run)
    with fails_with(FerlabError, empty_run / "model.pt", "no such"):
        run_evaluation(empty_run, blob_data)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with fails_with(FerlabError, tmp_path / "junk.pt", "readable"):
        run_evaluation(tmp_path / "junk.pt", blob_data)
    disjoint = tmp_path / "disjoint"
    for i in range(3):
        write_image(disjoint / "test" / "fear" / f"{i}.png", blob_image(0, np.random.default_rng(i)))
        write_image(disjoint / "test" / "neutral" / f"{i}.png", blob_image(1, np.random.default_rng(i)))
    with fails_with(FerlabError, "fear", "neutral", "angry", "happy", "sad"):  # both class lists
        run_evaluation(blob_model, disjoint, out=tmp_path / "e")
    only_train = tmp_path / "only_train"
    shutil.copytree(blob_data / "train", only_train / "train")
    with fails_with(FerlabError, "'test'", "empty", only_train, "train"):  # the split, the data, what it has
        run_evaluation(blob_model, only_train, out=tmp_path / "e")


def test_cli_evaluate_and_explain(blob_model: Path, blob_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(blob_model),
            "--data",
            str(blob_data),
            "--out",
            str(tmp_path / "e"),
            "--no-gradcam",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| angry |" in result.output and "report.md" in result.output
    face = write_image(tmp_path / "face.png", blob_image(0, np.random.default_rng(1)))
    result = runner.invoke(
        app,
        [
            "explain",
            str(face),
            "--model",
            str(blob_model),
            "--out",
            str(tmp_path / "cam.png"),
            "--class",
            "Anger",
            "--no-detect",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("face 1 at (0, 0, 48, 48): angry ") and (tmp_path / "cam.png").stat().st_size > 0

    result = runner.invoke(
        app, ["explain", str(GRACE_HOPPER), "--model", str(blob_model), "--out", str(tmp_path / "gh.png")]
    )
    assert result.exit_code == 0 and "no face found" not in result.output, result.output
    assert Image.open(tmp_path / "gh.png").size[0] < 600  # the face crop, not the whole photo
    result = runner.invoke(app, ["explain", str(tmp_path / "absent.png"), "--model", str(blob_model)])
    cli_error(result, tmp_path / "absent.png", "no such file")
    blank = write_image(tmp_path / "wall.png", np.full((120, 160, 3), 128, np.uint8))
    result = runner.invoke(app, ["explain", str(blank), "--model", str(blob_model), "--out", str(tmp_path / "w.png")])
    assert result.exit_code == 2 and "no face found" in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "w.png").exists()  # no heatmap of the background posing as a face


def test_explanations_use_the_crop_the_predictor_classified(blob_model: Path) -> None:
    """Grad-CAM runs on the aligned crop the predictor made (the web app's and `ferlab explain`'s
    one implementation), explains the predicted class by default, every face of a photo, each
    labelled, and refuses a photo without a face."""
    from ferlab.data.imageio import as_rgb
    from ferlab.evaluation.explain import Explainer, explain_faces, explanation_panel
    from ferlab.inference.annotate import COLOR, UNCERTAIN_COLOR
    from ferlab.inference.predictor import load

    predictor = load(blob_model, backend="torch")
    rgb = as_rgb(GRACE_HOPPER)
    face = predictor.predict(rgb)[0]
    assert face.detected is not None
    explanation = Explainer(predictor).explain(rgb, face)
    assert np.array_equal(explanation.crop, predictor.crops(rgb, [face.detected])[0])
    assert explanation.label == face.label and explanation.score == face.confidence
    assert explanation.image.shape == (face.box[2], face.box[2], 3)  # the face at its own resolution, in colour
    assert Explainer(predictor).explain(rgb, face, "happy").label == "happy"
    with pytest.raises(FerlabError, match="no face found"):
        explain_faces(predictor, np.full((120, 160, 3), 128, np.uint8))
    pair = np.concatenate([rgb, rgb[:, ::-1]], axis=1)
    explanations = explain_faces(predictor, pair, "sad")
    assert len(explanations) == 2 and {e.label for e in explanations} == {"sad"}
    assert len({e.image.shape for e in explanations}) == 1  # one size, side by side
    panel = explanation_panel(explanations, header=30)
    size = explanations[0].image.shape[0]
    for number, explanation in enumerate(explanations):  # each face's label sits above it, in its colour
        color = UNCERTAIN_COLOR if explanation.score < 0.5 else COLOR
        x = 8 + number * (size + 8)
        header = panel[:30, x : x + size].astype(int)
        assert (np.abs(header - color).max(axis=2) < 5).sum() > 200, number


def test_gradcam_concentrates_where_the_signal_is(blob_model: Path) -> None:
    """The blob model's only signal is where the blob is: Grad-CAM must light up that spot."""
    bundle = load_bundle(blob_model)
    for label, (cx, cy) in enumerate([(12, 12), (36, 36), (36, 12)]):
        face = blob_image(label, np.random.default_rng(100 + label))[:, :, None]
        heatmap, explained = gradcam(bundle, face, label)
        assert explained == label and heatmap.shape == (48, 48) and heatmap.max() == pytest.approx(1.0)
        y, x = np.mgrid[0:48, 0:48]
        near = (x - cx) ** 2 + (y - cy) ** 2 < 12**2
        assert heatmap[near].mean() > 2 * heatmap[~near].mean(), f"class {label}"


@pytest.mark.parametrize("name", available_models())
def test_gradcam_runs_on_every_architecture(name: str) -> None:
    size = 48 if name in ("seed_cnn", "vgg13_fer") else 32
    model = create_model(name, 3, input_size=size)
    bundle = ModelBundle.of(model, LabelSet("x", ("angry", "happy", "sad")))
    face = np.random.default_rng(0).integers(0, 256, (size, size, model.in_channels), dtype=np.uint8)
    heatmap, explained = gradcam(bundle, face)
    assert heatmap.shape == (size, size) and heatmap.min() >= 0 and heatmap.max() <= 1
    assert 0 <= explained < 3


def test_model_card_reports_measured_figures(
    blob_model: Path, blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferlab.evaluation import card

    measure = card.classification_speed
    monkeypatch.setattr(card, "classification_speed", lambda predictor, batch: measure(predictor, batch, seconds=0.2))
    result = runner.invoke(
        app,
        [
            "runs",
            "card",
            str(blob_model),
            "--data",
            str(blob_data),
            "--out",
            str(tmp_path / "card.md"),
            "--name",
            "blobs",
            "--command",
            "ferlab train blobs.yaml",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "note:" in result.output and "--model" in result.output  # the old positional run still works
    text = (tmp_path / "card.md").read_text()
    metrics = json.loads((blob_model / "eval" / f"{blob_data.name}-test" / "metrics.json").read_text())
    assert f"Accuracy **{100 * metrics['all']['accuracy']:.2f}%** on 20 test images" in text
    assert "faces/s at batch 1" in text and "```yaml" in text and "ferlab train blobs.yaml" in text
    assert "Classes (3): angry, happy, sad." in text
    assert "fitted on the same images. The test split" in text  # calibrated on clean validation images
    assert f"{100 * metrics['tta']['tencrop']['accuracy']:.2f}% with ten crops" in text
    served = metrics["default_prior"]
    assert served["strength"] == 0.5
    assert f"accuracy **{100 * served['accuracy']:.2f}%**, macro-F1 {served['macro_f1']:.3f}" in text


def test_the_default_prior_figures_rebalance_as_predict_does(blob_model: Path) -> None:
    from dataclasses import replace

    from ferlab.evaluation.evaluator import EvaluationResult, at_default_prior
    from ferlab.models.bundle import load_bundle
    from ferlab.models.calibration import softmax
    from ferlab.models.prior import DEFAULT_PRIOR, rebalance

    record = replace(load_bundle(blob_model).record, class_prior=(0.7, 0.2, 0.1))
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(400, 3)) * record.temperature, rng.integers(0, 3, 400)  # calibrated: N(0, 1)
    result = EvaluationResult(record.classes, labels, logits, np.arange(400).astype(str), record.temperature)
    served = rebalance(softmax(logits, record.temperature), np.array(record.class_prior), DEFAULT_PRIOR).argmax(1)
    assert (served != result.probabilities.argmax(1)).sum() > 20  # the prior moves predictions here
    metrics = at_default_prior(result, record)
    assert metrics is not None and metrics.accuracy == pytest.approx((served == labels).mean())
    assert at_default_prior(result, replace(record, class_prior=None)) is None


def test_unknown_test_time_augmentation_is_refused_before_any_work(
    blob_model: Path, blob_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["evaluate", "--model", str(blob_model), "--data", str(blob_data), "--tta", "rotate", "--out", str(out)]
    )
    assert result.exit_code != 0 and "'rotate'" in result.output and "auto" in result.output
    assert not out.exists()


def test_evaluating_a_run_uses_its_split_of_an_unsplit_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ferlab.evaluation import report
    from ferlab.training.config import build_config
    from ferlab.training.data import load_training_data
    from ferlab.training.entry import train

    data = make_class_tree(tmp_path / "faces", {"angry": 10, "happy": 10, "sad": 10}, splits=())
    config = build_config(
        {"name": "seeded"},
        [
            f"data.path={data}",
            "data.split_seed=3",
            "model.name=baseline_cnn",
            "model.params={input_size: 24}",
            "train.epochs=1",
            "train.batch_size=8",
        ],
    )
    run_dir, _ = train(config, tmp_path / "runs")
    trained_test = sorted(load_training_data(config, 24, 1).split("test").sources)

    loaded = []
    real_load = report.load_dataset

    def recording_load(*args: object, **kwargs: object) -> object:
        loaded.append(real_load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(report, "load_dataset", recording_load)
    run_evaluation(run_dir, data, out=tmp_path / "eval", gradcam_examples=False)
    assert sorted(loaded[0].split("test").sources) == trained_test  # not the seed-0 split's test images
    assert (
        sorted(
            load_training_data(
                build_config(
                    {"name": "s0"}, [f"data.path={data}", "model.params={input_size: 24}", "model.name=baseline_cnn"]
                ),
                24,
                1,
            )
            .split("test")
            .sources
        )
        != trained_test
    )


# --- any labelled folder: --split all, shipped names, the photo pipeline, bench, where files go ---


@pytest.fixture
def unsplit_blobs(tmp_path: Path) -> Path:
    """A class-folder dataset without splits, 6 blob images per class."""
    rng = np.random.default_rng(11)
    for label, name in enumerate(("angry", "happy", "sad")):
        for i in range(6):
            write_image(tmp_path / "unsplit" / name / f"{i}.png", blob_image(label, rng))
    return tmp_path / "unsplit"


def test_split_all_scores_every_image_and_says_so(
    blob_model: Path, unsplit_blobs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["evaluate", "--model", str(blob_model), "--data", str(unsplit_blobs), "--split", "all", "--no-gradcam"]
    )
    assert result.exit_code == 0, result.output
    assert_names(result.output, "18 images", "Accuracy")
    out_dir = tmp_path / "eval" / f"{blob_model.name}-unsplit-all"
    assert json.loads((out_dir / "metrics.json").read_text())["all"]["samples"] == 18
    report = (out_dir / "report.md").read_text()
    assert "every image, all splits (18 images); 18 images scored" in report and "## All images (every split)" in report
    result = runner.invoke(app, ["evaluate", "--model", str(blob_model), "--data", str(unsplit_blobs), "--no-gradcam"])
    assert result.exit_code == 0, result.output
    assert_names(result.output, "`test`", "2 of 18", "--split all")  # not silent about carving
    result = runner.invoke(
        app, ["evaluate", "--model", str(blob_model), "--data", str(unsplit_blobs), "--split", "everything"]
    )
    cli_error(result, "'everything'", "split")


def test_a_renamed_ferplus_split_folder_is_known_to_have_no_splits(tmp_path: Path) -> None:
    """FER2013Test copied as mytest/ names no split: scoring its carved-out tenth must say so,
    and `auto` (bench) scores every image, as for any folder without splits."""
    import shutil

    from conftest import write_ferplus_folder
    from ferlab.data.loader import load_dataset
    from ferlab.evaluation.report import describe_split, native_splits, resolve_split

    root = write_ferplus_folder(tmp_path / "ferplus")
    assert native_splits(root, "auto") == {"train", "val", "test"}
    renamed = Path(shutil.copytree(root / "FER2013Train", tmp_path / "mytest"))
    native = native_splits(renamed, "auto")
    assert native == set() and resolve_split("auto", native) == "all"
    dataset = load_dataset(renamed)
    assert "a seeded stratified part" in describe_split(dataset, "test", native, 0)


def test_detect_runs_the_photo_pipeline(blob_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ferlab.data.imageio import as_rgb

    photo = as_rgb(GRACE_HOPPER)
    for name in ("angry", "happy"):
        for i, scale in enumerate((0.5, 1.0)):
            write_image(
                tmp_path / "photos" / name / f"{i}.jpg",
                np.ascontiguousarray(np.array(Image.fromarray(photo).resize((round(512 * scale), round(600 * scale))))),
            )
    write_image(tmp_path / "photos" / "happy" / "blank.png", np.full((200, 200, 3), 128, np.uint8))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["evaluate", "--model", str(blob_model), "--data", "photos", "--split", "all", "--detect", "--no-gradcam"]
    )
    assert result.exit_code == 0, result.output
    assert_names(result.output, "face", "4 of 5", "photo pipeline")
    summary = json.loads((tmp_path / "eval" / f"{blob_model.name}-photos-all" / "metrics.json").read_text())
    assert summary["all"]["samples"] == 5 and summary["face_found"]["samples"] == 4
    assert summary["protocol"].startswith("photo pipeline")


def test_bench_prints_one_table_for_every_model_and_dataset(
    blob_model: Path, blob_data: Path, unsplit_blobs: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "bench",
            "-m",
            str(blob_model),
            "--model",
            str(blob_model / "model.pt"),
            "--data",
            str(blob_data),
            "--data",
            str(unsplit_blobs),
            "--out",
            str(tmp_path / "bench.md"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith(f"| {blob_model.name} |")]
    assert len(rows) == 4
    assert f"| {blob_model.name} | {blob_data.name} | test | 20 |" in rows[0]  # its own test split
    assert f"| {blob_model.name} | unsplit | all | 18 |" in rows[1]  # no splits: every image
    assert "recall angry" in result.output and "macro-F1" in result.output
    assert json.loads((tmp_path / "bench.json").read_text())[1]["images"] == 18


def test_bench_and_explain_refuse_bad_arguments_before_any_work(
    blob_model: Path, blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferlab.evaluation import report

    scored = []
    monkeypatch.setattr(report, "evaluate", lambda *args, **kwargs: scored.append(args) or None)
    for args, message in (
        (["bench", "-m", str(blob_model), "-m", "nosuchmodel", "--data", str(blob_data)], "nosuchmodel"),
        (
            ["bench", "--model", str(blob_model), "--data", str(blob_data), "--data", str(tmp_path / "none")],
            "no such file",
        ),
        (["bench", "--model", str(blob_model), "--data", str(blob_data), "--out", str(tmp_path)], "is a folder"),
        (["explain", str(tmp_path / "face.png"), "--out", str(tmp_path / "cam.txt")], "ending in .png"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert scored == []  # nothing was evaluated before the bad argument was found


@pytest.fixture
def gray_faces(tmp_path: Path) -> Path:
    from conftest import synthetic_face

    for i in range(4):
        write_image(tmp_path / "gray" / ("happy" if i % 2 else "sad") / f"{i}.png", synthetic_face(i))
    return tmp_path / "gray"


def package_files() -> dict[str, float]:
    import ferlab

    root = Path(ferlab.__file__).parent
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_shipped_model_names_work_in_every_command_and_nothing_is_written_in_the_package(
    gray_faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    before = package_files()
    face = gray_faces / "happy" / "1.png"
    commands = [
        ["evaluate", "--model", "ferplus8", "--data", str(gray_faces), "--split", "all", "--no-gradcam"],
        ["bench", "-m", "ferplus8", "-m", "five", "--data", str(gray_faces)],
        ["explain", str(face), "--model", "fer2013-7", "--no-detect", "--out", "cam.png"],
        ["export", "--model", "five"],
        ["predict", str(face), "--model", "ferplus8", "--no-detect"],
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    assert (tmp_path / "eval" / "ferplus8-gray-all" / "report.md").is_file()
    assert (tmp_path / "cam.png").is_file()
    assert (tmp_path / "five.onnx").stat().st_mode & 0o777 == 0o644  # in the working directory, readable
    result = runner.invoke(app, ["webcam", "--camera", "97", "--model", "five"])  # the model loads, the camera fails
    cli_error(result, "camera", "97")
    result = runner.invoke(app, ["evaluate", "--model", "nonexistent", "--data", str(gray_faces)])
    cli_error(result, "'nonexistent'")
    assert package_files() == before
