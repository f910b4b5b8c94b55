"""Predictor on real and generated photos, bad input, backends, batch CLI, video and export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import GRACE_HOPPER, blob_image, cli_error, fails_with
from ferlab.cli.main import app
from ferlab.data import imageio
from ferlab.data.imageio import as_rgb
from ferlab.errors import FerlabError
from ferlab.inference.catalog import model_name
from ferlab.inference.detection import HaarDetector, create_detector
from ferlab.inference.predictor import FacePrediction, Predictor, resolve_model
from ferlab.inference.tracking import FaceTracker
from ferlab.models.bundle import load_bundle

runner = CliRunner()


@pytest.fixture(scope="module")
def predictor(blob_model: Path) -> Predictor:
    return Predictor(load_bundle(blob_model), detector="haar", backend="torch")


# --- reading whatever users hand over ------------------------------------------------------


def test_as_rgb_accepts_every_common_form(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb(gray).shape == (3, 4, 3) and as_rgb(gray[:, :, None])[0, 1].tolist() == [1, 1, 1]
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert as_rgb(bgr, bgr=True)[0, 0].tolist() == [0, 0, 255]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: composited onto white
    assert as_rgb(rgba)[0, 0].tolist() == [255, 255, 255]
    assert as_rgb(np.full((2, 2), 65535, np.uint16))[0, 0].tolist() == [255, 255, 255]
    assert as_rgb(np.full((2, 2), 0.5, np.float32))[0, 0, 0] == 127
    with fails_with(FerlabError, "(2, 2, 5)", "(H, W, 3)"):  # the shape given, a shape allowed
        as_rgb(np.zeros((2, 2, 5), np.uint8))
    with fails_with(FerlabError, "list", "path"):  # the type given, a type allowed
        as_rgb([1, 2, 3])  # type: ignore[arg-type]


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert as_rgb(buffer.getvalue()).shape == (40, 20, 3)
    assert as_rgb(Image.open(io.BytesIO(buffer.getvalue()))).shape == (40, 20, 3)


def test_cmyk_and_16_bit_files_decode(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert as_rgb(tmp_path / "cmyk.jpg").shape == (8, 8, 3)
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "deep.png")
    assert as_rgb(tmp_path / "deep.png").dtype == np.uint8


def test_bad_files_are_refused_with_clear_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    with fails_with(FerlabError, tmp_path / "empty.png", "empty"):
        as_rgb(tmp_path / "empty.png")
    with fails_with(FerlabError, tmp_path / "text.jpg", "readable"):
        as_rgb(tmp_path / "text.jpg")
    with fails_with(FerlabError, tmp_path / "missing.png", "no such"):
        as_rgb(tmp_path / "missing.png")
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(imageio, "MAX_PIXELS", 10_000)
    with fails_with(FerlabError, tmp_path / "big.png", "200x200", "10,000"):  # the file, its size, the limit
        as_rgb(tmp_path / "big.png")


@pytest.mark.slow
def test_decompression_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    """A tiny file that claims 100k x 100k pixels must not be decoded into 10 GB."""
    Image.new("1", (100_000, 100_000)).save(tmp_path / "bomb.png")  # 1-bit: small on disk
    assert (tmp_path / "bomb.png").stat().st_size < 5_000_000
    with pytest.raises(FerlabError, match="decompression bomb|pixel limit"):
        as_rgb(tmp_path / "bomb.png")


# --- detection and prediction ----------------------------------------------------------------


def test_haar_finds_the_face_in_a_real_photo() -> None:
    faces = HaarDetector().detect(as_rgb(GRACE_HOPPER))
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 120 < x + w / 2 < 400 and 100 < y + h / 2 < 330 and 150 < w < 320
    assert 0 < faces[0].score <= 1


def test_detection_on_a_huge_image_maps_boxes_back(tmp_path: Path) -> None:
    photo = as_rgb(GRACE_HOPPER)
    big = cv2.resize(photo, (photo.shape[1] * 5, photo.shape[0] * 5))
    small_box = HaarDetector().detect(photo)[0].box
    big_box = HaarDetector().detect(big)[0].box
    assert all(abs(b - 5 * s) < 60 for b, s in zip(big_box, small_box))


def test_predictions_are_sorted_calibrated_and_flag_uncertainty(predictor: Predictor) -> None:
    faces = predictor.predict(blob_image(0, np.random.default_rng(3)), detect=False)
    assert len(faces) == 1 and faces.reason is None
    face = faces[0]
    values = list(face.probabilities.values())
    assert values == sorted(values, reverse=True) and abs(sum(values) - 1) < 1e-5
    assert set(face.probabilities) == set(predictor.classes) and face.label == "angry"
    assert face.box == (0, 0, 48, 48) and face.detector_score is None
    assert face.uncertain == (face.confidence < predictor.uncertain_below)
    assert face.to_dict()["label"] == face.label


def test_a_photo_without_a_face_returns_an_empty_list_with_a_reason(predictor: Predictor) -> None:
    faces = predictor.predict(np.full((240, 320, 3), 128, np.uint8))
    assert list(faces) == [] and "no face found" in (faces.reason or "")


def test_one_pixel_and_real_photo(predictor: Predictor) -> None:
    assert len(predictor.predict(np.zeros((1, 1), np.uint8), detect=False)) == 1
    [face] = predictor.predict(GRACE_HOPPER)
    assert face.detector_score is not None and 150 < face.box[2] < 320


def test_onnx_and_torch_give_the_same_probabilities(blob_model: Path) -> None:
    pytest.importorskip("onnxruntime")
    bundle = load_bundle(blob_model)
    faces = np.stack([blob_image(i % 3, np.random.default_rng(i))[:, :, None] for i in range(6)])
    torch_p = Predictor(bundle, backend="torch").classify(faces)
    onnx_predictor = Predictor(bundle, backend="onnx")
    assert onnx_predictor.engine.backend.name == "onnx"
    np.testing.assert_allclose(onnx_predictor.classify(faces), torch_p, atol=1e-4)


def test_model_names_resolve_or_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FerlabError, match="no model 'nonexistent'"):
        resolve_model("nonexistent")
    with pytest.raises(FerlabError, match="unknown face detector"):
        create_detector("yolo")


def test_front_ends_name_a_model_by_its_shipped_name_run_folder_or_file(tmp_path: Path) -> None:
    run = tmp_path / "my-run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"")
    (tmp_path / "other.pt").write_bytes(b"")
    assert model_name("ferplus8") == "ferplus8"
    assert model_name(run) == model_name(run / "model.pt") == "my-run"
    assert model_name(tmp_path / "other.pt") == "other"
    assert model_name(tmp_path / "gone.pt") == str(tmp_path / "gone.pt")  # kept, so choosing it says why it fails


# --- tracking, CLI, video, export -----------------------------------------------------------


def prediction(box: tuple[int, int, int, int], happy: float) -> FacePrediction:
    return FacePrediction(box, 0.9, {"happy": happy, "sad": 1 - happy}, uncertain=False)


def test_tracker_keeps_ids_and_smooths_flicker() -> None:
    tracker = FaceTracker(("happy", "sad"), smoothing=0.6)
    first = tracker.update([prediction((0, 0, 50, 50), 0.9), prediction((200, 0, 50, 50), 0.1)])
    second = tracker.update([prediction((205, 2, 50, 50), 0.1), prediction((3, 1, 50, 50), 0.2)])
    assert [t.face_id for t in first] == [1, 2] and [t.face_id for t in second] == [2, 1]
    label, confidence = tracker.label(second[1])
    assert label == "happy" and confidence == pytest.approx(0.6 * 0.9 + 0.4 * 0.2)  # one noisy frame does not flip it
    for _ in range(6):
        tracker.update([])
    assert tracker.tracks == []


def test_predict_cli_handles_folders_globs_and_bad_files(blob_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(blob_image(i, np.random.default_rng(i))).save(folder / f"face{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG nope")
    (tmp_path / "more").mkdir()
    Image.fromarray(blob_image(0, np.random.default_rng(9))).save(tmp_path / "more" / "face0.png")
    result = runner.invoke(
        app,
        [
            "predict",
            str(folder),
            str(tmp_path / "more"),
            str(tmp_path / "*.none"),
            "--model",
            str(blob_model),
            "--no-detect",
            "--backend",
            "torch",
            "--out",
            str(tmp_path / "out.csv"),
            "--annotate",
            str(tmp_path / "ann"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "skip: " in result.output and "broken.png" in result.output and "nothing matches" in result.output
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    read = [r for r in rows if not r["reason"]]
    assert [Path(r["file"]).name for r in read] == ["face0.png", "face1.png", "face2.png", "face0.png"]
    assert [Path(r["file"]).name for r in rows if r["reason"].startswith("not read: ")] == ["broken.png"]
    assert {"angry", "happy", "sad", "confidence"} <= set(rows[0])
    assert len(list((tmp_path / "ann").glob("*.png"))) == 4  # the two face0.png do not overwrite each other
    result = runner.invoke(app, ["predict", str(folder), "--model", str(blob_model), "--batch", "0"])
    assert result.exit_code == 2 and "--batch" in result.output
    result = runner.invoke(
        app,
        [
            "predict",
            str(GRACE_HOPPER),
            "--model",
            str(blob_model),
            "--backend",
            "torch",
            "--detector",
            "haar",
            "--out",
            str(tmp_path / "out.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    [record] = json.loads((tmp_path / "out.json").read_text())
    assert record["face"] == 1 and len(record["probabilities"]) == 3
    result = runner.invoke(app, ["predict", str(tmp_path / "missing.jpg"), "--model", str(blob_model)])
    assert result.exit_code == 2 and "no such file" in result.output  # reported; nothing was read, so it fails
    assert str(tmp_path / "missing.jpg") in result.output


def write_video(path: Path, frames: int = 12) -> Path:
    photo = cv2.cvtColor(as_rgb(GRACE_HOPPER), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(frames):
        canvas = np.full((240, 320, 3), 90, np.uint8)
        face = cv2.resize(photo[90:350, 130:400], (130, 125))
        canvas[40:165, 40 + 6 * i : 170 + 6 * i] = face
        writer.write(canvas)
    writer.release()
    return path


def test_video_tracks_one_face_and_writes_csv_video_and_plot(blob_model: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4")
    result = runner.invoke(
        app,
        [
            "video",
            str(video),
            "--model",
            str(blob_model),
            "--out",
            str(tmp_path / "v"),
            "--every",
            "2",
            "--detector",
            "haar",
            "--backend",
            "torch",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "v" / "frames.csv").open()))
    assert rows and {r["face_id"] for r in rows} == {"1"}
    assert {int(r["frame"]) % 2 for r in rows} == {0}
    for name in ("annotated.mp4", "emotions.png"):
        assert (tmp_path / "v" / name).stat().st_size > 0
    assert cv2.VideoCapture(str(tmp_path / "v" / "annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 12


def test_unreadable_video_and_missing_camera_are_clear_errors(blob_model: Path, tmp_path: Path) -> None:
    (tmp_path / "fake.mp4").write_text("not a video")
    result = runner.invoke(app, ["video", str(tmp_path / "fake.mp4"), "--model", str(blob_model)])
    cli_error(result, "video", tmp_path / "fake.mp4")
    result = runner.invoke(app, ["webcam", "--camera", "97", "--model", str(blob_model)])
    cli_error(result, "camera 97")
    for option, value, allowed in (("--camera", "-5", "0"), ("--every", "0", "1")):
        result = runner.invoke(app, ["webcam", option, value, "--model", str(blob_model)])  # -5 segfaulted OpenCV
        cli_error(result, option, allowed)


def test_a_video_that_decodes_no_frame_leaves_an_earlier_run_untouched(blob_model: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4")
    args = ["--model", str(blob_model), "--out", str(tmp_path / "v"), "--detector", "haar", "--backend", "torch"]
    assert runner.invoke(app, ["video", str(video), *args]).exit_code == 0
    before = (tmp_path / "v" / "frames.csv").read_text()
    data = bytearray(video.read_bytes())  # the same container with its frame data zeroed: opens, decodes nothing
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = bytes(size - 8)
    (tmp_path / "blank.mp4").write_bytes(bytes(data))
    result = runner.invoke(app, ["video", str(tmp_path / "blank.mp4"), *args])
    cli_error(result, tmp_path / "blank.mp4", "frame")
    assert (tmp_path / "v" / "frames.csv").read_text() == before


def test_fast_picks_the_live_video_model_and_conflicts_with_model(
    blob_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ferlab.models.shipped.FAST_MODEL", str(blob_model))
    video = write_video(tmp_path / "clip.mp4")
    out = tmp_path / "v"
    result = runner.invoke(app, ["video", str(video), "--fast", "--out", str(out), "--every", "6", "--detector=haar"])
    assert result.exit_code == 0, result.output
    assert (out / "frames.csv").stat().st_size > 0
    result = runner.invoke(app, ["video", str(video), "--fast", "--model", str(blob_model)])
    cli_error(result, "--model", blob_model, "--fast")
    result = runner.invoke(app, ["webcam", "--fast", "--camera", "97"])
    cli_error(result, "camera 97")


def test_export_into_a_folder_writes_what_the_runtime_finds(blob_model: Path, tmp_path: Path) -> None:
    """A folder as --out gets the digest-named fp32 export and its manifest (no int8): how a
    model ships fp32 only."""
    from ferlab.models.record import ModelRecord

    pytest.importorskip("onnxruntime")
    result = runner.invoke(app, ["export", "--model", str(blob_model), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (manifest_path,) = tmp_path.glob("*.json")
    manifest = ModelRecord.load(manifest_path)
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == [manifest.onnx_name("fp32")]
    assert "vs torch on random faces" in result.output


def test_export_onnx_matches_torch(blob_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    result = runner.invoke(app, ["export", "--model", str(blob_model), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").stat().st_size > 0
    difference = float(result.output.split("vs torch on random faces: ")[1].split(")")[0])
    assert difference < 1e-3


def test_the_shipped_default_model_works_with_no_flags(tmp_path: Path) -> None:
    import ferlab

    predictor = ferlab.load()
    assert predictor.classes == ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
    [face] = predictor.predict(GRACE_HOPPER)
    assert len(face.probabilities) == 8 and 0 < face.confidence <= 1
    result = runner.invoke(app, ["predict", str(GRACE_HOPPER), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())[0]["label"] == face.label


def test_every_shipped_model_loads_and_has_a_card() -> None:
    from ferlab.inference.predictor import shipped_models
    from ferlab.models.shipped import shipped_file

    shipped = shipped_models()
    assert {"ferplus8", "fer2013-7", "five"} <= set(shipped)
    for name, record in shipped.items():
        path = shipped_file(record, "weights")
        bundle = load_bundle(path)
        assert shipped_file(record, "card").is_file() and bundle.record.num_classes >= 5, name
        assert path.stat().st_size < 25_000_000
