"""The Streamlit app through Streamlit's own harness (AppTest): uploads, snapshots, messages and toggles.

AppTest runs the real script and feeds `st.file_uploader` and `st.camera_input` real
bytes, so these tests go through the same code path as a browser upload.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import ferlab.apps
from conftest import GRACE_HOPPER, assert_names, blob_image
from ferlab.inference.catalog import EXTRA_MODELS_ENV
from ferlab.inference.predictor import load
from ferlab.models.shipped import MODEL_ENV

WEBAPP = str(Path(ferlab.apps.__file__).with_name("webapp.py"))


def encoded(pixels: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


@pytest.fixture
def app(blob_model: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(MODEL_ENV, str(blob_model))
    monkeypatch.delenv(EXTRA_MODELS_ENV, raising=False)
    at = AppTest.from_file(WEBAPP, default_timeout=60).run()
    assert not at.exception and not at.error
    return at


def texts(elements: object) -> str:
    return "\n".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


def test_an_uploaded_photo_is_boxed_charted_and_labelled(app: AppTest, blob_model: Path) -> None:
    [expected] = load(blob_model).predict(GRACE_HOPPER)
    app.file_uploader[0].set_value(("grace.jpg", GRACE_HOPPER.read_bytes(), "image/jpeg")).run()
    assert not app.exception and not app.error
    assert f"**Face 1: {expected.label}** ({expected.confidence:.0%} confidence, calibrated)" in texts(app.markdown)
    assert len(app.get("vega_lite_chart")) == 1  # the probability bars of the one face
    assert [caption for image in app.image for caption in image.captions] == ["grace.jpg: 1 face", "face 1"]
    card = texts(app.sidebar.markdown)
    assert "**Classes** (3): angry, happy, sad" in card and "**Test accuracy:**" in card


def test_no_face_and_not_an_image_get_clear_messages(app: AppTest) -> None:
    app.file_uploader[0].set_value(("gray.png", encoded(np.full((240, 320), 128, np.uint8)), "image/png")).run()
    assert_names(texts(app.warning), "gray.png", "face")
    assert not app.get("vega_lite_chart")
    app.file_uploader[0].set_value(("broken.jpg", b"not really a jpeg", "image/jpeg")).run()
    assert_names(texts(app.error), "broken.jpg", "JPEG")  # the file, a kind of file to upload instead
    assert not app.exception


def test_face_crops_grad_cam_and_the_uncertain_note(app: AppTest) -> None:
    app.sidebar.toggle[0].set_value(False)  # Find faces: off, the upload is a face crop
    app.toggle(key="gradcam").set_value(True)
    app.file_uploader[0].set_value(("blob.png", encoded(blob_image(1, np.random.default_rng(5))), "image/png")).run()
    assert not app.exception and "**Face 1: happy**" in texts(app.markdown)
    assert "Grad-CAM: where the model looked" in app.image[1].captions
    flat = encoded(np.full((48, 48), 90, np.uint8))  # no blob anywhere: the model cannot be sure
    app.file_uploader[0].set_value(("flat.png", flat, "image/png")).run()
    assert_names(texts(app.info), "Uncertain", "%")


def test_a_camera_snapshot_is_analysed_like_an_upload(app: AppTest) -> None:
    app.radio[0].set_value("Camera snapshot").run()
    jpeg = encoded(np.asarray(Image.open(GRACE_HOPPER)), "JPEG")
    app.camera_input[0].set_value(("snapshot.jpg", jpeg, "image/jpeg")).run()
    assert not app.exception and "**Face 1:" in texts(app.markdown) and len(app.get("vega_lite_chart")) == 1


def test_live_webcam_without_streamlit_webrtc_says_what_to_install(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        sys.modules, "streamlit_webrtc", None
    )  # as if not installed; the real one is tested in Chromium
    app.radio[0].set_value("Live webcam").run()
    assert not app.exception
    assert_names(texts(app.info), "streamlit-webrtc", "pip install 'ferlab[live]'")


def test_models_are_chosen_in_the_sidebar_and_bad_ones_explained(
    blob_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_ENV, str(blob_model))
    monkeypatch.setenv(EXTRA_MODELS_ENV, str(blob_model / "model.pt"))
    at = AppTest.from_file(WEBAPP, default_timeout=60).run()
    assert at.selectbox[0].options[0] == f"blobs ({blob_model})"  # the default first, then shipped and extra models
    assert at.selectbox[0].options[-1] == f"blobs ({blob_model / 'model.pt'})"
    at.selectbox[0].select(str(blob_model / "model.pt")).run()
    assert not at.error and "Model card: blobs" in texts(at.sidebar.subheader)
    monkeypatch.setenv(MODEL_ENV, str(blob_model / "missing.pt"))
    at = AppTest.from_file(WEBAPP, default_timeout=60).run()
    assert_names(texts(at.error), blob_model / "missing.pt")
    assert not at.file_uploader


def test_ferlab_app_runs_streamlit_on_localhost_with_the_models_in_its_environment(
    blob_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    import ferlab.cli.serve as serve_module
    from ferlab.cli.serve import app_command

    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(serve_module, "run_child", lambda command, env: calls.append((command, env)) or 0)
    command = typer.Typer()
    command.command()(app_command)
    result = CliRunner().invoke(command, ["--model", str(blob_model), "--add-model", str(blob_model / "model.pt")])
    assert result.exit_code == 0, result.output
    [(argv, env)] = calls
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4] == WEBAPP
    assert (
        argv[argv.index("--server.address") + 1] == "127.0.0.1"
        and argv[argv.index("--server.maxUploadSize") + 1] == "10"
    )
    assert env[MODEL_ENV] == str(blob_model) and env[EXTRA_MODELS_ENV] == str(blob_model / "model.pt")
    result = CliRunner().invoke(command, ["--add-model", str(blob_model / "missing.pt"), "--model", str(blob_model)])
    assert result.exit_code == 2 and "missing.pt" in result.output and len(calls) == 1


def test_the_page_names_datasets_not_paths_and_the_card_is_in_the_main_area(
    blob_model: Path, blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    model = tmp_path / "run"
    shutil.copytree(blob_model, model)
    (model / "README.md").write_text(
        "# Model card: run\n\n- Trained on the train split of `.data/ferplus`, best epoch on the validation split.\n"
        "- Reproduce: `ferlab runs card runs/x --data .data/ferplus`.\n\n## Test results\n\nAccuracy **91.00%** "
        "on 30 test images.\n\n## Training config\n\n```yaml\ndata:\n  path: .data/ferplus\n```\n\n"
        "Full evaluation report: `runs/x/eval/report.md`.\n"
    )
    monkeypatch.setenv(MODEL_ENV, str(model))
    at = AppTest.from_file(WEBAPP, default_timeout=60).run()
    sidebar = texts(at.sidebar.markdown)
    assert f"**Training data:** {blob_data.name}  \n" in sidebar and str(blob_data) not in sidebar  # named, not located
    assert not at.sidebar.expander  # the full card is too wide for the sidebar
    [card] = at.main.expander
    shown = texts(card.markdown)
    assert "Trained on the train split of FER+" in shown and "91.00%" in shown
    assert ".data/" not in shown and "Reproduce" not in shown and "runs/" not in shown


def test_every_face_is_charted_on_one_zero_to_one_axis(app: AppTest) -> None:
    pair = np.asarray(Image.open(GRACE_HOPPER))
    pair = np.concatenate([pair, pair[:, ::-1]], axis=1)  # two faces, the second mirrored
    app.file_uploader[0].set_value(("pair.png", encoded(pair), "image/png")).run()
    charts = app.get("vega_lite_chart")
    assert len(charts) == 2
    for chart in charts:
        spec = json.loads(chart.proto.spec)
        assert spec["encoding"]["x"]["scale"]["domain"] == [0, 1]


def test_the_rebalancing_control_says_what_it_does(app: AppTest) -> None:
    from ferlab.models.prior import DEFAULT_PRIOR, prior_strength

    [control] = app.sidebar.select_slider
    assert control.label == "Rebalance rare expressions" and prior_strength(control.value) == DEFAULT_PRIOR
    assert [prior_strength(choice) for choice in control.options] == [0, 0.5, 1]  # shown as numbers, not names
    assert "posed photo sets" in texts(app.sidebar.caption) and "everyday photos" in texts(app.sidebar.caption)


def test_shipped_cards_as_the_app_shows_them_hold_no_developer_path() -> None:
    from ferlab.apps.webapp import card_for_people
    from ferlab.data.names import dataset_name
    from ferlab.models.shipped import shipped_file, shipped_models

    assert [dataset_name(p) for p in (".data/ferplus", "data/fer2013.csv", "/home/me/lab-faces/", None)] == [
        "FER+",
        "FER2013",
        "lab-faces",
        None,
    ]
    for name, record in shipped_models().items():
        shown = card_for_people(shipped_file(record, "card").read_text())
        assert "## Test results" in shown and "| class |" in shown, name
        assert not any(part in shown for part in (".data/", "runs/", "src/ferlab/", "configs/")), name
