"""int8 exports found by weights digest, one thread by default, and the uniform class prior."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import fails_with
from ferlab.cli.main import app
from ferlab.errors import FerlabError
from ferlab.inference.engine import TTA, VIEW_COUNT, LogitEngine, _views, onnx_cache_dir
from ferlab.inference.predictor import load
from ferlab.models.bundle import load_bundle

runner = CliRunner()
pytest.importorskip("onnxruntime")


def test_int8_export_lands_where_the_runtime_finds_it_and_agrees_with_fp32(blob_model: Path, blob_data: Path) -> None:
    bundle = load_bundle(blob_model)
    with pytest.raises(FerlabError, match="no int8 export"):
        LogitEngine.for_bundle(bundle, "onnx", "int8")
    assert LogitEngine.for_bundle(bundle, "onnx", "auto").backend.precision == "fp32"  # type: ignore[attr-defined]
    result = runner.invoke(app, ["export", "--model", str(blob_model), "--int8"])
    assert result.exit_code == 2 and "--calibration" in result.output
    result = runner.invoke(app, ["export", "--model", str(blob_model), "--int8", "--calibration", str(blob_data)])
    assert result.exit_code == 0, result.output
    assert any(p.name.endswith(".int8.onnx") for p in onnx_cache_dir().iterdir())
    int8, fp32 = LogitEngine.for_bundle(bundle, "onnx", "auto"), LogitEngine.for_bundle(bundle, "onnx", "fp32")
    assert int8.backend.precision == "int8" and fp32.backend.precision == "fp32"  # type: ignore[attr-defined]
    images = np.stack([np.asarray(p) for p in _blob_faces(blob_data)])
    agree = (int8.logits(images).argmax(1) == fp32.logits(images).argmax(1)).mean()
    assert agree >= 0.9


def _blob_faces(root: Path) -> list[np.ndarray]:
    import cv2

    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[..., None] for p in sorted((root / "test").rglob("*.png"))]


def test_onnx_runs_one_intra_op_thread_unless_asked(blob_model: Path) -> None:
    bundle = load_bundle(blob_model)
    default = LogitEngine.for_bundle(bundle, "onnx").backend.session.get_session_options()  # type: ignore[attr-defined]
    assert default.intra_op_num_threads == 1
    two = LogitEngine.for_bundle(bundle, "onnx", threads=2).backend.session.get_session_options()  # type: ignore[attr-defined]
    assert two.intra_op_num_threads == 2


def test_unknown_precision_and_int8_on_torch_are_refused(blob_model: Path) -> None:
    bundle = load_bundle(blob_model)
    with pytest.raises(FerlabError, match="unknown precision"):
        LogitEngine.for_bundle(bundle, "onnx", "fp16")  # type: ignore[arg-type]
    with pytest.raises(FerlabError, match="onnx backend only"):
        LogitEngine.for_bundle(bundle, "torch", "int8")


def test_view_count_matches_the_views_made() -> None:
    """VIEW_COUNT sizes the chunks whose views share one network call; it must say what _views makes."""
    batch = np.zeros((3, 1, 48, 48), np.float32)
    assert {tta: len(_views(batch, tta)) for tta in get_args(TTA)} == VIEW_COUNT


def test_unknown_tta_is_refused_when_the_predictor_is_made(blob_model: Path) -> None:
    with fails_with(FerlabError, "'bogus'", "flip"):  # the value given, an allowed one
        load(blob_model, tta="bogus")  # not at the first face, minutes into a video


def test_uniform_prior_rebalances_by_the_recorded_training_prior(blob_model: Path, blob_data: Path) -> None:
    bundle = load_bundle(blob_model)
    prior = np.asarray(bundle.record.class_prior)
    assert prior.shape == (3,) and prior.sum() == pytest.approx(1) and prior[2] < prior[0]  # "sad" is rarer
    faces = np.stack(_blob_faces(blob_data))
    natural = load(blob_model, prior="train").classify(faces)  # as trained (the default is half way)
    balanced = load(blob_model, prior="uniform").classify(faces)
    expected = natural / prior
    np.testing.assert_allclose(balanced, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5)
    half = load(blob_model, prior=0.5).classify(faces)
    expected = natural / np.sqrt(prior)
    np.testing.assert_allclose(half, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(load(blob_model, prior="0.5").classify(faces), half, rtol=1e-6)  # as the CLI passes it
    for wrong in ("balanced", 1.5, -0.1, "nan"):
        with pytest.raises(FerlabError, match="unknown prior"):
            load(blob_model, prior=wrong)
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
    assert predictor.engine.backend.precision == "int8"  # type: ignore[attr-defined]
    assert load(precision="fp32").engine.backend.precision == "fp32"  # type: ignore[attr-defined]


_TORCH_FREE_SCRIPT = """
import sys
import ferlab
predictor = ferlab.load({model!r})
faces = predictor.predict({image!r})
print(predictor.engine.backend.precision, len(faces), faces[0].label if faces else None)
print(sorted(m for m in ("torch", "onnx") if m in sys.modules))
"""


def _run_torch_free(model: str | None, image: Path) -> list[str]:
    import subprocess
    import sys

    script = _TORCH_FREE_SCRIPT.format(model=model, image=str(image))
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_the_shipped_default_predicts_without_importing_torch_or_onnx() -> None:
    import matplotlib

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    precision_line, modules = _run_torch_free(None, photo)
    assert precision_line.startswith("int8 1 "), precision_line
    assert modules == "[]", f"the inference path imported {modules}"


def test_a_model_file_runs_without_torch_once_its_export_is_cached(blob_model: Path, blob_data: Path) -> None:
    """The first load exports and leaves a record in the cache (FERLAB_CACHE_DIR, inherited
    by the child process); the second finds it by the file's digest and never imports torch."""
    face = min((blob_data / "test").rglob("*.png"))
    first = load(str(blob_model), detector="haar")
    assert first.engine.backend.name == "onnx"
    assert list(onnx_cache_dir().glob("*.json")), "no record was written next to the cached export"
    expected = first.predict(face, detect=False)[0].label
    script = _TORCH_FREE_SCRIPT.replace(
        "faces = predictor.predict({image!r})", "faces = predictor.predict({image!r}, detect=False)"
    )
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", script.format(model=str(blob_model), image=str(face))],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    precision_line, modules = result.stdout.strip().splitlines()
    assert precision_line == f"fp32 1 {expected}" and modules == "[]", result.stdout


def test_the_torch_free_predictor_agrees_with_the_torch_backend(blob_model: Path, blob_data: Path) -> None:
    faces = np.stack(_blob_faces(blob_data))
    onnx = load(str(blob_model), precision="fp32")
    torch_backend = load(str(blob_model), backend="torch")
    np.testing.assert_allclose(onnx.classify(faces), torch_backend.classify(faces), atol=1e-4)
    for tta in ("flip", "tencrop"):
        np.testing.assert_allclose(onnx.engine.logits(faces, tta), torch_backend.engine.logits(faces, tta), atol=1e-3)


def test_ferlab_models_lists_the_table_without_loading_a_model() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "ferplus8" in result.output and "87.63" in result.output and "fer2013-7" in result.output


def test_every_shipped_model_ships_the_onnx_file_it_runs_by_default() -> None:
    """Without it the first load exports, which imports torch: not the torch-free path promised."""
    from ferlab.inference.engine import SHIPPED_ONNX_DIR
    from ferlab.models.shipped import shipped_models

    for name, record in shipped_models().items():
        files = [SHIPPED_ONNX_DIR / record.onnx_name(precision) for precision in ("int8", "fp32")]
        assert any(path.is_file() for path in files), f"{name}: neither {files[0].name} nor {files[1].name}"
