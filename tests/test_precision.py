"""int8 exports found by weights digest, one thread by default, and the uniform class prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ferlab.cli.main import app
from ferlab.errors import FerlabError
from ferlab.inference.engine import Classifier, onnx_cache_dir
from ferlab.inference.predictor import load
from ferlab.models.bundle import load_bundle

runner = CliRunner()
pytest.importorskip("onnxruntime")


def test_int8_export_lands_where_the_runtime_finds_it_and_agrees_with_fp32(blob_model: Path, blob_data: Path) -> None:
    bundle = load_bundle(blob_model)
    with pytest.raises(FerlabError, match="no int8 export"):
        Classifier(bundle, "onnx", "int8")
    assert Classifier(bundle, "onnx", "auto").backend.precision == "fp32"  # type: ignore[attr-defined]
    result = runner.invoke(app, ["export", str(blob_model), "--int8"])
    assert result.exit_code == 2 and "--calibration" in result.output
    result = runner.invoke(app, ["export", str(blob_model), "--int8", "--calibration", str(blob_data)])
    assert result.exit_code == 0, result.output
    assert any(p.name.endswith(".int8.onnx") for p in onnx_cache_dir().iterdir())
    int8, fp32 = Classifier(bundle, "onnx", "auto"), Classifier(bundle, "onnx", "fp32")
    assert int8.backend.precision == "int8" and fp32.backend.precision == "fp32"  # type: ignore[attr-defined]
    images = np.stack([np.asarray(p) for p in _blob_faces(blob_data)])
    agree = (int8.logits(images).argmax(1) == fp32.logits(images).argmax(1)).mean()
    assert agree >= 0.9


def _blob_faces(root: Path) -> list[np.ndarray]:
    import cv2

    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[..., None] for p in sorted((root / "test").rglob("*.png"))]


def test_onnx_runs_one_intra_op_thread_unless_asked(blob_model: Path) -> None:
    bundle = load_bundle(blob_model)
    default = Classifier(bundle, "onnx").backend.session.get_session_options()  # type: ignore[attr-defined]
    assert default.intra_op_num_threads == 1
    two = Classifier(bundle, "onnx", threads=2).backend.session.get_session_options()  # type: ignore[attr-defined]
    assert two.intra_op_num_threads == 2


def test_unknown_precision_and_int8_on_torch_are_refused(blob_model: Path) -> None:
    bundle = load_bundle(blob_model)
    with pytest.raises(FerlabError, match="unknown precision"):
        Classifier(bundle, "onnx", "fp16")  # type: ignore[arg-type]
    with pytest.raises(FerlabError, match="onnx backend only"):
        Classifier(bundle, "torch", "int8")


def test_uniform_prior_rebalances_by_the_recorded_training_prior(blob_model: Path, blob_data: Path) -> None:
    bundle = load_bundle(blob_model)
    prior = np.asarray(bundle.info["class_prior"])
    assert prior.shape == (3,) and prior.sum() == pytest.approx(1) and prior[2] < prior[0]  # "sad" is rarer
    faces = np.stack(_blob_faces(blob_data))
    natural = load(blob_model).classify(faces)
    balanced = load(blob_model, prior="uniform").classify(faces)
    expected = natural / prior
    np.testing.assert_allclose(balanced, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5)
    with pytest.raises(FerlabError, match="unknown prior"):
        load(blob_model, prior="balanced")  # type: ignore[arg-type]
    result = runner.invoke(
        app,
        [
            "predict",
            str(blob_data / "test" / "sad" / "0.png"),
            "--no-detect",
            "--model",
            str(blob_model),
            "--prior",
            "uniform",
        ],
    )
    assert result.exit_code == 0, result.output


def test_the_shipped_default_runs_int8_by_default() -> None:
    predictor = load()
    assert predictor.classifier.backend.precision == "int8"  # type: ignore[attr-defined]
    assert load(precision="fp32").classifier.backend.precision == "fp32"  # type: ignore[attr-defined]
