"""Folders of images through worker threads: input order, unreadable files and the CLI's rate line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ferlab.cli.main import app
from ferlab.errors import FerlabError
from ferlab.inference.batch import predict_files
from ferlab.inference.predictor import Predictor, load


def _files(blob_data: Path, tmp_path: Path) -> list[Path]:
    paths = sorted((blob_data / "test").rglob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    return paths[:5] + [broken] + paths[5:]


@pytest.mark.parametrize("workers", [1, 3])
def test_results_come_in_input_order_with_unreadable_files_reported(
    blob_model: Path, blob_data: Path, tmp_path: Path, workers: int
) -> None:
    paths = _files(blob_data, tmp_path)
    made: list[Predictor] = []

    def make() -> Predictor:
        made.append(load(str(blob_model), backend="torch"))
        return made[-1]

    results = list(predict_files(paths, make, workers=workers, chunk=4, detect=False))
    assert [r.path for r in results] == paths
    assert [r.error is not None for r in results] == [p.name == "broken.png" for p in paths]
    assert all(len(r.faces) == 1 for r in results if r.faces is not None)
    assert 1 <= len(made) <= workers  # one predictor per worker thread, made on first use
    single = load(str(blob_model), backend="torch")
    for result in results:
        if result.faces is not None:
            assert result.faces[0].label == single.predict(result.path, detect=False)[0].label


def test_bad_worker_counts_are_refused(blob_model: Path) -> None:
    with pytest.raises(FerlabError, match="at least 1"):
        list(predict_files([], lambda: load(str(blob_model)), workers=0))


def test_predict_on_a_folder_uses_workers_and_reports_images_per_second(
    blob_model: Path, blob_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "faces.csv"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(blob_data / "test"),
            "--model",
            str(blob_model),
            "--no-detect",
            "--workers",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "images/s" in result.output
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + len(list((blob_data / "test").rglob("*.png")))


def test_a_front_end_without_its_extra_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real_find_spec(name, *a)
    )
    result = CliRunner().invoke(app, ["serve", "--port", "8123"])
    assert result.exit_code == 2 and "pip install 'ferlab[api]'" in result.output and "uvicorn" in result.output


def test_an_unknown_or_absent_device_is_a_clear_error(blob_model: Path) -> None:
    with pytest.raises(FerlabError, match="unknown device"):
        load(str(blob_model), device="gpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(FerlabError, match="no CUDA GPU"):
            load(str(blob_model), device="cuda", backend="torch")
    result = CliRunner().invoke(app, ["predict", str(blob_model), "--device", "tpu"])
    assert result.exit_code == 2 and "unknown device" in result.output


def test_ferlab_model_names_the_default_for_predict_and_the_python_api(
    blob_model: Path, blob_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERLAB_MODEL", str(blob_model))
    assert load(backend="torch").classes == ("angry", "happy", "sad")
    face = min((blob_data / "test").rglob("*.png"))
    result = CliRunner().invoke(app, ["predict", str(face), "--no-detect"])
    assert result.exit_code == 0, result.output
    assert any(name in result.output for name in ("angry", "happy", "sad"))


def test_evaluate_refuses_an_unknown_device_before_scoring(blob_model: Path, blob_data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(blob_model),
            "--data",
            str(blob_data),
            "--device",
            "gpu",
            "--out",
            str(tmp_path / "e"),
        ],
    )
    assert result.exit_code == 2 and "unknown device" in result.output


def test_a_run_that_fails_midway_still_writes_the_rows_it_has(
    blob_model: Path, blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Predictor.predict_many
    calls: list[int] = []

    def fail_on_the_second_chunk(self: Predictor, images: list, **options: bool) -> list:
        calls.append(len(images))
        if len(calls) == 2:
            raise RuntimeError("the machine fell over")
        return real(self, images, **options)

    monkeypatch.setattr(Predictor, "predict_many", fail_on_the_second_chunk)
    out = tmp_path / "partial.csv"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(blob_data / "test"),
            "--model",
            str(blob_model),
            "--no-detect",
            "--workers",
            "1",
            "--batch",
            "4",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert len(out.read_text().splitlines()) == 1 + 4  # the header and the first chunk's four faces
