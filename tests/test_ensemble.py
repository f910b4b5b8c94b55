"""Ensembles (`A+B`): each member as it is alone, then the plain mean, wherever a model is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import GRACE_HOPPER, blob_image, fails_with
from ferlab.cli.main import app
from ferlab.errors import FerlabError
from ferlab.inference.catalog import model_summary
from ferlab.inference.predictor import Predictor, load
from ferlab.labels import LabelSet
from ferlab.models.bundle import ModelBundle, load_bundle, save_bundle
from ferlab.models.registry import create_model
from ferlab.models.shipped import member_references, resolve

runner = CliRunner()


def saved_model(path: Path, labels: LabelSet, size: int, channels: int, **facts: object) -> Path:
    """An untrained model at another input than the blob model's (seconds, no training)."""
    torch.manual_seed(size + channels)
    model = create_model("baseline_cnn", len(labels.classes), input_size=size, in_channels=channels).eval()
    save_bundle(ModelBundle.of(model, labels, **facts), path)  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def rgb_model(blob_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The blob model's classes at 32x32 RGB, calibrated and rebalanced differently."""
    record = load_bundle(blob_model).record
    path = tmp_path_factory.mktemp("rgb") / "rgb.pt"
    return saved_model(path, record.labels, 32, 3, temperature=1.7, class_prior=(0.6, 0.3, 0.1))


def probabilities(predictor: Predictor, image: object, detect: bool = True) -> list[dict[str, float]]:
    return [face.probabilities for face in predictor.predict(image, detect=detect)]  # type: ignore[arg-type]


def test_an_ensemble_of_a_model_with_itself_is_that_model(blob_model: Path) -> None:
    alone = load(blob_model, detector="haar", backend="torch")
    twice = load(f"{blob_model}+{blob_model}", detector="haar", backend="torch")
    assert len(twice.members) == 2 and twice.name == f"{alone.name}+{alone.name}"
    [face], [same] = probabilities(alone, GRACE_HOPPER), probabilities(twice, GRACE_HOPPER)
    assert list(same) == list(face)
    np.testing.assert_allclose(list(same.values()), list(face.values()), atol=1e-6)


def test_an_ensemble_averages_its_members_each_fed_its_own_crops(blob_model: Path, rgb_model: Path) -> None:
    options = {"detector": "haar", "backend": "torch", "prior": 0.5}
    a, b = load(blob_model, **options), load(rgb_model, **options)
    both = load(f"{blob_model}+{rgb_model}", **options)
    assert both.inputs == ((48, 1), (32, 3)) and both.classes == a.classes
    for image, detect in ((GRACE_HOPPER, True), (blob_image(1, np.random.default_rng(0)), False)):
        [pa], [pb], [pab] = (probabilities(p, image, detect) for p in (a, b, both))
        mean = {c: (pa[c] + pb[c]) / 2 for c in a.classes}
        np.testing.assert_allclose([pab[c] for c in a.classes], [mean[c] for c in a.classes], atol=1e-5)
        assert next(iter(pab)) == max(mean, key=mean.__getitem__)  # ranked by the mean
    with fails_with(FerlabError, "32x32x3", "crops_per_input"):
        both.classify(np.zeros((1, 48, 48, 1), np.uint8))


def test_what_an_ensemble_is_called_and_what_it_refuses(blob_model: Path, rgb_model: Path) -> None:
    reference = f"{blob_model}+{rgb_model}"
    both = load(reference, backend="torch")
    assert both.record.name == both.name == f"{blob_model.resolve().name}+rgb"
    assert both.record.input_size == 48 and both.label_set == both.members[0].record.labels  # the first member's
    assert both.record.headline is None and "ensemble of" in (both.record.description or "")
    summary = model_summary(both.record, reference, [m.record for m in both.members])
    assert [m["input"] for m in summary["members"]] == [{"size": 48, "channels": 1}, {"size": 32, "channels": 3}]
    assert summary["name"] == both.name and summary["test"] is None and summary["card"] is None
    json.dumps(summary)  # what /v1/models answers
    for attribute in ("bundle", "engine", "temperature"):
        with fails_with(FerlabError, both.name, "ensemble", "member"):
            getattr(both, attribute)
    with fails_with(FerlabError, "ensemble", "name one of its members"):
        resolve(reference)  # what needs one network: evaluate, bench, export


def test_members_must_share_their_class_list(blob_model: Path, rgb_model: Path, tmp_path: Path) -> None:
    record = load_bundle(blob_model).record
    reordered = saved_model(tmp_path / "other.pt", LabelSet(record.label_set, record.classes[::-1]), 48, 1)
    with fails_with(FerlabError, "rgb", "other", "different classes"):
        load(f"{rgb_model}+{reordered}", backend="torch")


def test_a_path_with_a_plus_is_one_model(blob_model: Path, tmp_path: Path) -> None:
    path = shutil.copy(blob_model / "model.pt", tmp_path / "a+b.pt")
    assert member_references(str(path)) == [str(path)] and member_references(Path("x+y")) == [Path("x+y")]
    assert member_references("x+y") == ["x", "y"]
    assert len(load(str(path), backend="torch").members) == 1
    with fails_with(FerlabError, "none of them empty"):
        member_references("x+")


def test_the_cli_predicts_with_an_ensemble(blob_model: Path, rgb_model: Path, tmp_path: Path) -> None:
    image = tmp_path / "face.png"
    Image.fromarray(blob_image(0, np.random.default_rng(1))).save(image)
    reference = f"{blob_model}+{rgb_model}"
    out = tmp_path / "faces.json"
    result = runner.invoke(app, ["predict", str(image), "--model", reference, "--no-detect", "--out", str(out)])
    assert result.exit_code == 0, result.output
    [row] = json.loads(out.read_text())
    expected = load(reference, backend="torch").predict(image, detect=False)[0].probabilities
    np.testing.assert_allclose([row["probabilities"][c] for c in expected], list(expected.values()), atol=1e-4)


def test_the_api_names_an_ensemble_and_its_members(blob_model: Path, rgb_model: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from ferlab.apps.api import create_app

    reference = f"{blob_model}+{rgb_model}"
    predictor = load(reference, detector="haar", backend="torch")
    with TestClient(create_app(predictor, reference=reference)) as client:
        [card] = client.get("/v1/models").json()["models"]
        photo = ("photo.jpg", GRACE_HOPPER.read_bytes(), "image/jpeg")
        answer = client.post("/v1/predict", files={"file": photo}, params={"detect": "false"})
    assert card["name"] == predictor.name and [m["name"] for m in card["members"]] == [
        m.label for m in predictor.members
    ]
    assert answer.status_code == 200 and answer.json()["model"] == predictor.name
