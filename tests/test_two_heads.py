"""Two-head runs (issue 31): a FER+ head and a FER2013 head on one trunk, trained together,
served as the FER+ model, and split into a FER2013 model of its own."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ferlab
from conftest import blob_image, cli_error, fails_with, invoke, write_image
from ferlab.data.second_labels import NO_LABEL, read_second_labels, second_labels_of
from ferlab.errors import FerlabError
from ferlab.labels import FER2013
from ferlab.models.bundle import load_bundle, split_heads
from ferlab.models.registry import add_second_head, create_model
from ferlab.training.config import build_config, load_config
from ferlab.training.entry import resume, train
from ferlab.training.loop import masked_cross_entropy
from ferlab.training.trainer import Trainer

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrained" / "ferplus8-lite0-twohead.yaml"
FER2013_CLASS = {0: "happy", 1: "angry", 2: "surprise"}
"""The FER2013 class each blob position's FER+ image gets in the generated mapping."""


def write_two_label_data(root: Path, train_images: int = 16) -> tuple[Path, Path]:
    """A FER+ folder of blob faces (the blob's position is the FER+ majority: neutral, happiness or
    surprise) and a mapping giving all but the last two training images a FER2013 class."""
    rng = np.random.default_rng(1)
    rows: list[list[str]] = []
    row = 0
    for folder, count in (("FER2013Train", train_images), ("FER2013Valid", 6), ("FER2013Test", 6)):
        (root / folder).mkdir(parents=True)
        with (root / folder / "label.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            for i in range(count):
                blob = i % 3
                name = f"fer{row:07d}.png"
                write_image(root / folder / name, blob_image(blob, rng))
                writer.writerow([name, "(0, 0, 48, 48)", *[10 if c == blob else 0 for c in range(10)]])
                if folder == "FER2013Train" and i < count - 2:
                    rows.append([f"train/{FER2013_CLASS[blob]}/Training_{row}.jpg", f"ferplus:{name}"])
                row += 1
    mapping = root / "fer2013_train_to_ferplus.csv"
    with mapping.open("w", newline="") as handle:
        csv.writer(handle).writerows([["file", "sharp_source"], *rows, ["train/sad/Training_999.jpg", "blank"]])
    return root, mapping


@pytest.fixture(scope="module")
def two_label_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_two_label_data(tmp_path_factory.mktemp("ferplus"))


TWO_HEAD_RUN = {
    "model.name": "baseline_cnn",
    "model.params": "{input_size: 24}",
    "train.epochs": 2,
    "train.batch_size": 8,
    "train.lr": 0.003,
}


def two_head_config(data: tuple[Path, Path], **overrides: object) -> list[str]:
    values = {"data.path": data[0], "data.second_labels": data[1], **TWO_HEAD_RUN, **overrides}
    return [f"{k}={v}" for k, v in values.items()]


def test_the_mapping_gives_each_ferplus_training_image_its_fer2013_class(tmp_path: Path) -> None:
    mapping = tmp_path / "map.csv"
    mapping.write_text(
        "file,sharp_source\n"
        "train/angry/Training_1.jpg,ferplus:fer0000001.png\n"
        "train/Happy/Training_2.jpg,ferplus:fer0000002.png\n"
        "train/sad/Training_3.jpg,blank\n"
        "train/fear/Training_4.jpg,dk\n"
        "train/fear/Training_5.jpg,ferplus:fer0000005.png\n"
        "train/sad/Training_6.jpg,ferplus:fer0000005.png\n"  # a FER2013 duplicate with another class
        "train/happy/Training_7.jpg,ferplus:fer0000002.png\n"  # a duplicate with the same class
    )
    labels = read_second_labels(mapping)
    assert labels == {"fer0000001.png": FER2013.index("angry"), "fer0000002.png": FER2013.index("happy")}
    sources = np.array(["FER2013Train/fer0000001.png", "FER2013Train/fer0000009.png", "FER2013Valid/fer0000002.png"])
    found = second_labels_of(sources, np.array(["train", "train", "val"]), labels)
    assert found.tolist() == [FER2013.index("angry"), NO_LABEL, NO_LABEL]  # never a validation image
    mapping.write_text("file,sharp_source\ntrain/bored/Training_1.jpg,ferplus:fer0000001.png\n")
    with fails_with(FerlabError, f"{mapping}:2", "bored"):
        read_second_labels(mapping)
    mapping.write_text("file,source\nx,y\n")
    with fails_with(FerlabError, mapping, "file,sharp_source"):
        read_second_labels(mapping)
    with fails_with(FerlabError, tmp_path / "absent.csv", "data.second_labels"):
        read_second_labels(tmp_path / "absent.csv")


def test_images_without_a_second_label_add_nothing_to_the_loss() -> None:
    logits = torch.randn(4, 7, requires_grad=True)
    none = masked_cross_entropy(logits, torch.full((4,), NO_LABEL))
    none.backward()
    assert none.item() == 0 and logits.grad is not None and not logits.grad.any()
    labels = torch.tensor([2, NO_LABEL, 5, NO_LABEL])
    some = masked_cross_entropy(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    torch.testing.assert_close(some, expected)


def test_the_second_head_learns_from_the_shared_features_and_forward_stays_the_first() -> None:
    model = create_model("baseline_cnn", 8, input_size=24)
    add_second_head(model, len(FER2013))
    model.freeze_backbone()  # a frozen trunk still trains both heads
    assert model.second_head is not None
    assert all(p.requires_grad for p in model.second_head.parameters())
    model.unfreeze_all()
    x = torch.randn(4, 1, 24, 24)
    assert model(x).shape == (4, 8)
    logits, second = model.forward_both(x)
    assert logits.shape == (4, 8) and second.shape == (4, 7)
    masked_cross_entropy(second, torch.tensor([0, 1, NO_LABEL, 6])).backward()
    assert all(p.grad is not None and p.grad.any() for p in model.second_head.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.head.parameters())  # the first head is not in this loss
    assert not any(k.startswith("second_head.") for k in model.primary_state_dict())
    with fails_with(FerlabError, "one head", "data.second_labels"):
        create_model("baseline_cnn", 8, input_size=24).forward_both(x)


def test_a_two_head_run_saves_the_ferplus_model_and_splits_off_a_fer2013_one(
    two_label_data: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, metrics = train(build_config({"name": "twohead"}, two_head_config(two_label_data)), tmp_path)
    history = json.loads((run_dir / "history.json").read_text())
    assert all(0 <= h["train_second_accuracy"] <= 1 for h in history)
    assert "second_acc" in (run_dir / "train.log").read_text()
    assert metrics["second_head"] == {
        "label_set": "fer2013",
        "labels": str(two_label_data[1]),
        "weight": 0.5,
        "train_images": 14,
    }
    bundle = load_bundle(run_dir)
    assert bundle.record.label_set == "ferplus" and bundle.model.second_head is None
    assert bundle.record.training.metrics["second_head"]["train_images"] == 14
    assert bundle.second is not None and bundle.second.labels == FER2013
    saved = torch.load(run_dir / "model.pt", weights_only=True)
    assert not any(k.startswith("second_head") for k in saved["state_dict"])  # older versions load it too
    assert bundle.second.class_prior is not None and sum(bundle.second.class_prior) == pytest.approx(1)

    primary, second = split_heads(bundle)
    assert primary.second is None and primary.record == bundle.record
    assert second.record.label_set == "fer2013" and second.record.classes == FER2013.classes
    assert second.record.temperature == 1.0 and second.record.headline is None
    assert second.record.run == "twohead" and second.record.name == "twohead-fer2013"
    assert "twohead" in (second.record.description or "")
    x = torch.rand(5, 1, 24, 24)
    with torch.no_grad():
        assert second.model(x).shape == (5, 7)
        trunk = dict(primary.model.backbone.state_dict())
        for key, value in second.model.backbone.state_dict().items():
            torch.testing.assert_close(value, trunk[key], rtol=0, atol=0)

    out = tmp_path / "fer2013-head"
    result = invoke("export", "--model", run_dir, "--head", "second", "--out", out)
    assert result.exit_code == 0, result.output
    written = load_bundle(out)
    assert written.record.classes == FER2013.classes and written.second is None
    assert written.record.weights_digest == second.record.weights_digest
    with torch.no_grad():
        torch.testing.assert_close(written.model(x), second.model.eval()(x))
    with fails_with(FerlabError, "one head", "data.second_labels"):
        split_heads(written)
    api = ferlab.split_heads(run_dir, tmp_path / "api.pt")
    assert api == tmp_path / "api.pt" and load_bundle(api).record.weights_digest == second.record.weights_digest
    cli_error(invoke("export", "--model", run_dir, "--head", "second", "--out", run_dir), "two-head model itself")
    cli_error(invoke("export", "--model", run_dir, "--head", "third"), "--head", "first", "second", "third")


def test_resume_carries_the_second_head(
    two_label_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = two_head_config(two_label_data, **{"train.epochs": 3, "train.mixup_alpha": 0.2})
    train(build_config({"name": "full"}, overrides), tmp_path)
    original = Trainer._run_epoch

    def run_one_then_die(self: Trainer, phase: object) -> None:
        if len(self.state.history) == 1:
            raise RuntimeError("simulated kill")
        original(self, phase)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "_run_epoch", run_one_then_die)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(build_config({"name": "killed"}, overrides), tmp_path)
    saved = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert any(k.startswith("second_head.") for k in saved["model"])
    monkeypatch.setattr(Trainer, "_run_epoch", original)
    resume(tmp_path / "killed")
    full, resumed = load_bundle(tmp_path / "full").second, load_bundle(tmp_path / "killed").second
    assert full is not None and resumed is not None
    for key, value in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value, rtol=0, atol=0, msg=key)


def test_second_label_settings_are_checked(two_label_data: tuple[Path, Path], blob_data: Path, tmp_path: Path) -> None:
    with fails_with(FerlabError, "train.second_head_weight", "0 < train.second_head_weight <= 10"):
        build_config({"name": "x"}, two_head_config(two_label_data, **{"train.second_head_weight": 0}))
    with fails_with(FerlabError, "data.second_labels", "str"):
        build_config({"name": "x"}, two_head_config(two_label_data, **{"data.second_labels": 5}))
    absent = build_config({"name": "x"}, two_head_config(two_label_data, **{"data.second_labels": tmp_path / "no.csv"}))
    with fails_with(FerlabError, tmp_path / "no.csv", "data.second_labels"):
        train(absent, tmp_path)
    elsewhere = build_config(
        {"name": "y"}, [*two_head_config(two_label_data), f"data.path={blob_data}", "model.params={input_size: 24}"]
    )
    with fails_with(FerlabError, "data.second_labels", "none of the", two_label_data[1]):
        train(elsewhere, tmp_path)


def test_the_twohead_config_trains_two_batches_on_a_slice(tmp_path: Path) -> None:
    data = write_two_label_data(tmp_path / "ferplus", train_images=16)
    config = load_config(
        CONFIG,
        [
            f"data.path={data[0]}",
            f"data.second_labels={data[1]}",
            "model.params.pretrained=null",  # no ImageNet download in a test
            "model.params.input_size=32",  # the recipe's network at a third of its size: seconds, not minutes
            "train.threads=1",  # two threads spin against the other processes of a loaded machine
            "train.epochs=1",
            "train.batch_size=8",
            "finetune.epochs=1",
        ],
    )
    assert config.data.second_labels == str(data[1]) and config.train.second_head_weight == 0.5
    run_dir, _ = train(config, tmp_path / "runs")
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["phase"] for h in history] == ["head", "finetune"]
    bundle = load_bundle(run_dir)
    assert bundle.record.arch == "efficientnet_lite0" and bundle.second is not None
    assert split_heads(bundle)[1].model(torch.rand(2, 1, 32, 32)).shape == (2, 7)
