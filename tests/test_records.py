"""Issue 29: one model record; models.json and the cards' facts generated from it; a Python
call for every command; describing a model without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ferlab
from conftest import tiny_config
from ferlab.cli.main import app
from ferlab.errors import FerlabError
from ferlab.models.bundle import load_bundle
from ferlab.models.record import ModelRecord, card_facts, card_facts_of, file_sha256
from ferlab.models.shipped import REGISTRY_FILE, shipped_file, shipped_models, shipped_record, table_entry


def test_records_models_json_and_cards_agree_with_the_shipped_weights() -> None:
    """Drift fails here: rerun scripts/write_shipped_records.py after changing a shipped model."""
    table = json.loads(REGISTRY_FILE.read_text())
    shipped = shipped_models()
    assert list(table) == list(shipped) and {"ferplus8", "fer2013-7", "five"} <= set(shipped)
    for name, record in shipped.items():
        path = shipped_file(record, "weights")
        weights = load_bundle(path).current_record(path)
        assert shipped_record(name, weights, record.description or "", record.headline, record.license or "") == (
            record
        ), name
        assert table[name] == table_entry(record), name
        card = shipped_file(record, "card").read_text()
        assert card_facts_of(card) == card_facts(record), name
        assert record.headline is not None and f"**{100 * record.headline.accuracy:.2f}%**" in card, name
        assert f"macro-F1 {record.headline.macro_f1:.3f}" in card, name
        assert path.stat().st_size < 25_000_000


NO_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
from fastapi.testclient import TestClient
import ferlab
from ferlab.apps.api import create_app
from ferlab.apps import webapp
from ferlab.inference.catalog import model_summary
[model] = TestClient(create_app("ferplus8", workers=1)).get("/v1/models").json()["models"]
described = model_summary(ferlab.load("five").record, "five")
records = ferlab.list_models()
assert "torch" not in sys.modules
print(model["test"]["accuracy"], described["name"], len(records))
"""


def test_the_api_and_the_web_app_describe_a_model_with_torch_blocked() -> None:
    pytest.importorskip("onnxruntime")
    result = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy, name, count = result.stdout.split()
    assert float(accuracy) == shipped_models()["ferplus8"].headline.accuracy  # type: ignore[union-attr]
    assert name == "five" and int(count) == len(shipped_models())


def test_an_older_onnx_manifest_still_loads_and_a_damaged_record_names_its_file(tmp_path: Path) -> None:
    record = shipped_models()["ferplus8"]
    older = {k: v for k, v in record.to_dict().items() if k in ModelRecord.__dataclass_fields__}
    keep = ("arch", "label_set", "classes", "input_size", "in_channels", "input_mean", "input_std")
    keep += ("temperature", "class_prior", "weights_digest", "source_sha256")
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "ferlab-onnx/1", **{k: older[k] for k in keep}}))
    loaded = ModelRecord.load(path)
    assert loaded.classes == record.classes and loaded.tta == "none" and loaded.headline is None
    path.write_text(json.dumps({"format": "ferlab-record/1", "arch": "x"}))
    with pytest.raises(FerlabError) as error:
        ModelRecord.load(path)
    assert str(path) in str(error.value) and "KeyError" in str(error.value)


def test_a_new_bundle_stores_its_record_and_the_export_writes_it_beside_the_onnx(
    blob_model: Path, tmp_path: Path
) -> None:
    import torch

    saved = torch.load(blob_model / "model.pt", map_location="cpu", weights_only=True)
    assert saved["record"]["name"] == "blobs" and saved["record"]["arch"] == "baseline_cnn"
    record = load_bundle(blob_model).record
    assert record.name == "blobs"
    assert record.headline is not None and 0 <= record.headline.accuracy <= 1

    pytest.importorskip("onnxruntime")
    (tmp_path / "out").mkdir()
    result = ferlab.export(blob_model, tmp_path / "out")
    assert result.max_difference is not None and result.max_difference < 1e-3
    (record_path,) = (tmp_path / "out").glob("*.json")
    exported = ModelRecord.load(record_path)
    assert exported.files["onnx"] == result.onnx.name and exported.checksums["onnx"] == file_sha256(result.onnx)
    assert exported.source_sha256 == file_sha256(blob_model / "model.pt")


def test_every_command_has_its_python_call(blob_data: Path, blob_model: Path, tmp_path: Path) -> None:
    run_dir, metrics = ferlab.train({"name": "api"}, runs_dir=tmp_path, overrides=tiny_config(blob_data))
    assert run_dir == tmp_path / "api" and metrics["epochs_run"] == 1
    assert ferlab.resume(run_dir)[0] == run_dir  # every epoch is done: it only finishes the run again
    out, summary = ferlab.evaluate(blob_model, blob_data, out=tmp_path / "eval", gradcam_examples=False)
    assert (out / "report.md").is_file() and 0 <= summary.all.accuracy <= 1
    [row] = ferlab.bench([blob_model], [blob_data])
    assert row["accuracy"] == pytest.approx(summary.all.accuracy)
    assert list(ferlab.list_models()) == list(shipped_models())


def test_the_commands_call_the_python_api(blob_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(ferlab, "export", lambda *args, **kwargs: calls.append(("export", args)) or 1 / 0)
    monkeypatch.setattr(ferlab, "evaluate", lambda *args, **kwargs: calls.append(("evaluate", args)) or 1 / 0)
    monkeypatch.setattr(ferlab, "train", lambda *args, **kwargs: calls.append(("train", args)) or 1 / 0)
    config = tmp_path / "c.yaml"
    config.write_text(f"name: c\ndata:\n  path: {tmp_path}\n")
    for command in (["export", str(blob_model)], ["evaluate", str(blob_model), "--data", "x"], ["train", str(config)]):
        with pytest.raises(ZeroDivisionError):
            CliRunner().invoke(app, command, catch_exceptions=False)
    assert [name for name, _ in calls] == ["export", "evaluate", "train"]


def test_an_export_with_its_record_or_the_record_itself_names_a_model(tmp_path: Path) -> None:
    """`<arch>-<digest>.onnx` with its `.json` beside it, or that `.json`, is a model reference as a
    shipped name is: resolved once to its record, run on ONNX Runtime without torch."""
    pytest.importorskip("onnxruntime")
    import shutil

    import numpy as np
    from PIL import Image

    from ferlab.models.shipped import ONNX_DIR

    record = shipped_models()["ferplus8-fast"]
    exported = tmp_path / "exported"
    exported.mkdir()
    onnx = Path(shutil.copy(shipped_file(record, "onnx"), exported))
    json_file = Path(shutil.copy(ONNX_DIR / record.file_name, exported))
    face = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    expected = ferlab.load("ferplus8-fast", precision="fp32").predict(face, detect=False)[0].probabilities
    for reference in (onnx, json_file):
        predictor = ferlab.load(reference)
        assert predictor.record == record and predictor.source is None
        assert predictor.engine.backend.path.parent == exported  # type: ignore[attr-defined]
        assert predictor.predict(face, detect=False)[0].probabilities == pytest.approx(expected, abs=1e-5)
    Image.fromarray(face).save(tmp_path / "face.png")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "face.png"), "--no-detect", "--model", str(onnx)])
    assert result.exit_code == 0 and record.classes[0] in result.output, result.output

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(onnx, alone)
    with pytest.raises(FerlabError) as error:
        ferlab.load(alone / onnx.name)
    assert "\n" not in str(error.value) and record.file_name in str(error.value)
    with pytest.raises(FerlabError, match="no weights"):
        ferlab.evaluate(json_file, tmp_path)
