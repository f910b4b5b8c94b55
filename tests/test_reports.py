"""The two reports' configs against a table of what the reports specify, and the docs' figures against the cards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from ferlab.models import create_model, param_counts
from ferlab.training.config import build_config, load_config
from ferlab.training.loop import phases_of, unfreeze_for

ROOT = Path(__file__).resolve().parents[1]
REPORT1 = ROOT / "configs" / "report1_five"
REPORT2 = ROOT / "configs" / "report2_ferplus"

# Every setting of a report config, with where it comes from: R, the report as issues 3, 18 and
# 32 transcribe it (the report is not in this repository), or OURS. Each config marks each of
# its settings the same way in a comment on its line ("# report: ..." or "# ours: ..."), and
# quotes only the report's words below.
R, OURS = "report", "ours"
REPORT_WORDS = {
    "custom CNN",
    "GAP-Dense128-Dropout0.5-softmax",
    "MobileNetV2 with class weights",
    "MobileNetV2 fine-tuned",
    "EfficientNetB0",
    "MobileNetV2 with geometric augmentation",
    "Geometric Aug. (No Weights)",
    "MobileNetV2 + photometric augmentation",
    "ResNet50V2 two-phase fine-tuned with class weights",
    "lr 1e-4 for 30",
    "top 50 layers, lr 1e-5, early stopping patience 3",
    "~5.8M parameters",
    "extra Convolutional block (256 filters) and the Dense layer (512 units)",
    "ReduceLROnPlateau 0.2",
    "about 90 %",
}

# Report 1: its five classes, 96x96 RGB input, the GAP-Dense128-Dropout0.5 head and ImageNet
# weights (not available offline: OURS). It gives a learning rate and epochs for V13 only and an
# early-stopping patience for fine-tuning only, and names no schedule: the rest is ours.
ONE_PHASE = {
    "data.path": (".data/fer2013", OURS),
    "data.label_set": ("five", R),
    "model.params.input_size": (96, R),
    "model.params.in_channels": (3, R),
    "model.params.hidden": (128, R),
    "model.params.dropout": (0.5, R),
    "model.params.pretrained": (None, OURS),
    "train.optimizer": ("adam", OURS),
    "train.lr": (1e-3, OURS),
    "train.epochs": (20, OURS),
    "train.batch_size": (32, OURS),
    "train.scheduler": ("none", OURS),
    "train.monitor": ("val_accuracy", OURS),
    "train.early_stopping_patience": (5, OURS),
    "train.class_weights": (True, OURS),
    "augment.policy": ("none", OURS),
}
GEOMETRIC = {  # the report: rotations and zooms; their ranges are ours
    "augment.policy": ("geometric", R),
    "augment.rotation": (10.0, OURS),
    "augment.zoom": (0.1, OURS),
    "augment.shift": (0.0, R),
    "augment.flip": (False, R),
}
PHOTOMETRIC = {
    "augment.policy": ("photometric", R),
    "augment.brightness": (0.2, OURS),
    "augment.contrast": (0.2, OURS),
    "augment.noise": (0.03, OURS),
}
TWO_PHASE = {  # "top 50 layers, lr 1e-5, early stopping patience 3"
    "finetune.enabled": (True, R),
    "finetune.unfreeze_top": (50, R),
    "finetune.layer_count": ("weights", OURS),  # Keras' list of this backbone is not reproduced
    "finetune.lr": (1e-5, R),
    "finetune.epochs": (10, OURS),
    "finetune.early_stopping_patience": (3, R),
    "finetune.freeze_batchnorm": (True, OURS),
}


def _row(file: str, figure: str, model: str, *changes: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    settings = {**ONE_PHASE, "model.name": (model, R)}
    for change in changes:
        settings.update(change)
    return {"file": file, "figure": figure, "settings": settings}


ROWS: dict[str, dict[str, Any]] = {
    "V1": _row("v1_baseline_cnn", "68 %", "baseline_cnn"),
    "V4": _row("v4_mobilenetv2_class_weights", "76 %", "mobilenet_v2", {"train.class_weights": (True, R)}),
    "V5": _row("v5_mobilenetv2_finetune", "79 %", "mobilenet_v2", TWO_PHASE),
    "V7": _row(
        "v7_efficientnetb0",
        "70 %",
        "efficientnet_b0",
        TWO_PHASE,  # fine-tuned (issue 18), how is ours: V5's
        {key: (value, OURS) for key, (value, _) in TWO_PHASE.items() if key != "finetune.enabled"},
    ),
    "V8": _row("v8_mobilenetv2_geometric", "56 %", "mobilenet_v2", GEOMETRIC, {"train.class_weights": (True, OURS)}),
    "V9": _row(
        "v9_mobilenetv2_geometric_no_cw",
        "57 %",
        "mobilenet_v2",
        GEOMETRIC,
        {"train.class_weights": (False, R), "model.name": ("mobilenet_v2", OURS)},  # V9's words name no network
    ),
    "V10": _row(
        "v10_mobilenetv2_photometric_no_cw",
        "not recorded here",
        "mobilenet_v2",
        PHOTOMETRIC,
        {"train.class_weights": (False, OURS)},
    ),
    "V11": _row(
        "v11_mobilenetv2_photometric", "49 %", "mobilenet_v2", PHOTOMETRIC, {"train.class_weights": (True, OURS)}
    ),
    "V12": _row(  # read as V13's first phase alone: ours
        "v12_resnet50v2_frozen_cw",
        "not recorded here",
        "resnet50v2",
        {
            "train.lr": (1e-4, OURS),
            "train.epochs": (30, OURS),
            "finetune.enabled": (True, OURS),
            "finetune.unfreeze_top": (0, OURS),
            "finetune.lr": (1e-5, OURS),
            "finetune.epochs": (1, OURS),
            "finetune.early_stopping_patience": (1, OURS),
        },
    ),
    "V13": _row(
        "v13_resnet50v2_finetune_cw",
        "87 % internal, 91 % external (FER-2013)",
        "resnet50v2",
        TWO_PHASE,
        {
            "train.lr": (1e-4, R),
            "train.epochs": (30, R),
            "train.class_weights": (True, R),
            "finetune.layer_count": ("keras", R),  # Keras' layers[140:] of ResNet50V2
            "finetune.freeze_batchnorm": (False, OURS),  # Keras trains the BN layers it unfreezes
        },
    ),
}
_V1 = ROWS["V1"]["settings"]
for _key in ("model.params.hidden", "model.params.dropout", "model.params.pretrained"):
    del _V1[_key]
_V1.update(
    {
        "model.name": ("baseline_cnn", OURS),  # a stand-in: the report never gives V1's layers
        "model.params.input_size": (48, OURS),
        "model.params.in_channels": (1, OURS),
        "train.epochs": (30, OURS),
        "train.batch_size": (64, OURS),
        "train.class_weights": (False, OURS),
    }
)
NOT_A_ROW = {"lite0_imagenet_finetune"}  # the project's own pretrained case, measured in docs/experiments.md

# Report 2: FER+, majority labels, Adam, "ReduceLROnPlateau 0.2", L2 (its amount ours), early
# stopping and the schedule on validation loss; it trained 50+ epochs, best near epoch 40.
REPORT2_SETTINGS = {
    "data.path": (".data/ferplus", R),
    "data.ferplus_majority": ("strict", OURS),
    "model.name": ("seed_cnn", OURS),  # the reading that has the report's ~5.8M parameters
    "train.epochs": (100, OURS),
    "train.batch_size": (64, OURS),
    "train.optimizer": ("adam", R),
    "train.lr": (1e-3, OURS),
    "train.weight_decay": (1e-4, OURS),
    "train.scheduler": ("plateau", R),
    "train.plateau_factor": (0.2, R),
    "train.plateau_patience": (3, OURS),
    "train.min_lr": (1e-6, OURS),
    "train.monitor": ("val_loss", R),
    "train.early_stopping_patience": (10, OURS),
    "train.targets": ("hard", R),
    "augment.policy": ("geometric", OURS),
}


def _twin(row: str) -> Path:
    return REPORT1 / f"{row.lower()}_lite0_imagenet.yaml"


def _twin_settings(row: str) -> dict[str, tuple[Any, str]]:
    """The row's settings with EfficientNet-Lite0 and its ImageNet weights standing in (ours)."""
    settings = {
        **ROWS[row]["settings"],
        "model.name": ("efficientnet_lite0", OURS),
        "model.params.pretrained": ("imagenet", OURS),
    }
    if "finetune.layer_count" in settings:  # Keras has no Lite0, so no Keras layer list
        settings["finetune.layer_count"] = ("weights", OURS)
    return settings


def _header(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines[: next(i for i, s in enumerate(lines) if not s.startswith("#"))])


def _marks(path: Path) -> dict[str, str]:
    """Each setting's dotted key -> the comment on its line ('' where there is none)."""
    marks: dict[str, str] = {}
    stack: list[str] = []
    for line in path.read_text().splitlines():
        match = re.match(r"^( *)(\w+):(.*?)(?:#\s*(.*))?$", line)
        if not match:
            continue
        depth = len(match[1]) // 2
        stack[depth:] = [match[2]]
        if match[3].strip() and stack != ["name"]:  # a value, not a section; the run name is no setting
            marks[".".join(stack)] = match[4] or ""
    return marks


def _check_settings(path: Path, settings: dict[str, tuple[Any, str]]) -> None:
    """The config holds exactly the table's settings, each marked as the table's source."""
    flat = load_config(path).flat()
    marks = _marks(path)
    assert set(marks) == set(settings), set(marks) ^ set(settings)
    for key, (value, source) in settings.items():
        assert flat[key] == value, (key, flat[key], value)
        assert marks[key].split(":")[0] == source, (key, marks[key])
    comments = " ".join(line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line)
    assert set(re.findall(r'"([^"]+)"', comments)) <= REPORT_WORDS  # quotation marks: the report's words only


def test_report1_has_exactly_the_reports_rows_and_their_lite0_twins():
    files = {p.stem for p in REPORT1.glob("*.yaml")}
    rows = {ROWS[row]["file"] for row in ROWS}
    twins = {_twin(row).stem for row in ROWS if row != "V1"}
    assert files == rows | twins | NOT_A_ROW


@pytest.mark.parametrize("row", list(ROWS))
def test_report1_row_matches_the_report(row: str):
    path = REPORT1 / f"{ROWS[row]['file']}.yaml"
    _check_settings(path, ROWS[row]["settings"])
    header = _header(path)
    assert f"row {row}:" in header and f"Report's figure: {ROWS[row]['figure']}." in header
    if row == "V1":
        assert "stand-in" in header  # the report never gives V1's layers
    else:  # the ImageNet backbone is not available offline: a twin on Lite0 with real weights
        assert _twin(row).name in header


@pytest.mark.parametrize("row", [row for row in ROWS if row != "V1"])
def test_report1_lite0_twin_is_the_same_row_with_imagenet_weights(row: str):
    twin = _twin(row)
    _check_settings(twin, _twin_settings(row))
    assert load_config(twin).name == f"r1-{row.lower()}-lite0-imagenet"
    assert f"row {row} on EfficientNet-Lite0" in _header(twin) and f"Report's figure for {row}" in _header(twin)


def test_report1_run_names_are_unique():
    names = [load_config(p).name for p in REPORT1.glob("*.yaml")]
    assert len(names) == len(set(names))


def test_v13_unfreezes_what_keras_unfreezes_from_layer_140():
    """Keras' ResNet50V2 layers[140:] (the top 50 of 190): 16.35 M parameters, not the 20.56 M of
    the top 50 layers with weights; their batch norm trains, the frozen layers' runs in inference mode."""
    config = load_config(REPORT1 / "v13_resnet50v2_finetune_cw.yaml")
    params = {k: v for k, v in config.model.params.items() if k != "pretrained"}
    model = create_model(config.model.name, 5, **params).train()
    head, finetune = phases_of(config)
    unfreeze_for(model, head, config)
    assert param_counts(model.backbone)[1] == 0
    unfreeze_for(model, finetune, config)
    assert param_counts(model.backbone)[1] == 16_352_256
    layers = dict(model.keras_layers())
    last_frozen, first_unfrozen = layers["conv4_block5_2_bn"], layers["conv4_block6_preact_bn"]
    assert last_frozen is not None and first_unfrozen is not None
    assert not last_frozen.training and first_unfrozen.training
    assert all(p.requires_grad for p in first_unfrozen.parameters())


def test_v12_trains_the_head_phase_only(blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """unfreeze_top 0 in both phases: the backbone ends with the weights it started with."""
    import copy

    from ferlab.models.bundle import load_bundle
    from ferlab.training import trainer
    from ferlab.training.config import read_config_file
    from ferlab.training.entry import train

    built = []

    def spy(*args: Any, **kwargs: Any):
        model = create_model(*args, **kwargs)
        built.append((model, copy.deepcopy(model.backbone.state_dict())))
        return model

    monkeypatch.setattr(trainer, "create_model", spy)
    values = read_config_file(REPORT1 / "v12_resnet50v2_frozen_cw.yaml")
    overrides = [
        f"data.path={blob_data}",
        "data.label_set=null",
        "model.name=mobilenet_v2",
        "model.params.input_size=32",
        "train.epochs=1",
        "train.batch_size=16",
        "train.threads=1",
    ]
    run_dir, _ = train(build_config(values, overrides), tmp_path)
    history = (run_dir / "history.json").read_text()
    assert '"head"' in history
    start = built[-1][1]  # the model that trained (the first one built is a probe)
    end = load_bundle(run_dir / "model.pt").model.backbone.state_dict()
    assert start.keys() == end.keys()
    assert all(torch.equal(start[key], end[key]) for key in start)
    head_start = create_model("mobilenet_v2", 3, input_size=32, in_channels=3).head  # shapes only
    assert param_counts(head_start) == param_counts(load_bundle(run_dir / "model.pt").model.head)


def _keras_params(name: str, num_classes: int) -> int:
    model = create_model(name, num_classes)
    moving = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return param_counts(model)[0] + moving


@pytest.mark.parametrize("target", ["hard", "votes"])
def test_report2_configs_match_the_report(target: str):
    settings = {**REPORT2_SETTINGS}
    if target == "votes":  # the FER+ paper's vote distribution; the report used majority labels
        settings["train.targets"] = ("votes", OURS)
    path = REPORT2 / f"seed_cnn_{target}.yaml"
    _check_settings(path, settings)
    header = _header(path)
    assert "5,873,096" in header and "7,672" in header and "0.81" in header
    prose = REPORT2 / f"seed_cnn_4block_{target}.yaml"  # an earlier reading, kept for its measured runs
    _check_settings(prose, {**settings, "model.name": ("seed_cnn_4block", OURS)})
    assert load_config(prose).to_dict()["train"] == load_config(path).to_dict()["train"]


def test_report2_networks_have_their_parameter_counts():
    assert _keras_params("seed_cnn", 8) == 5_873_096  # FER+: 8 classes; the report's ~5.8M
    assert _keras_params("seed_cnn_4block", 8) == 7_188_168


def test_docs_name_the_runs_not_yet_made_and_the_reports_own_test_printout():
    text = (ROOT / "docs" / "experiments.md").read_text()
    assert "7,672" in text and "0.81" in text
    for config in ("seed_cnn_hard.yaml", "seed_cnn_votes.yaml", "v*_lite0_imagenet.yaml"):
        assert config in text
    assert text.count("not yet run") >= 2


FLAGGED = (  # issue 32: settings once given as the reports' that they do not contain
    "Dense 512 + 256",
    "Dense 256 + Dropout",
    "stronger geometric",
    "frozen phase only",
    "Keras recipe the report followed",
    "20-30 epochs",
    "4 of 30 epochs",
    "4 of 20 epochs",
    "The report's V1 baseline",
)


def test_no_setting_is_attributed_to_a_report_that_does_not_give_it():
    places = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *REPORT1.glob("*.yaml"), *REPORT2.glob("*.yaml")]
    places += [ROOT / "src" / "ferlab" / "models" / "scratch.py"]
    for place in places:
        text = place.read_text()
        assert not [phrase for phrase in FLAGGED if phrase in text], place


# -- the shipped models' figures: model cards, README, docs -----------------------------------

CARDS = ROOT / "src" / "ferlab" / "weights"
SHIPPED = (
    "ferplus8-robust-40",
    "ferplus8-blend",
    "ferplus8",
    "fer2013-7",
    "five",
    "ferplus8-fast",
    "ferplus8-robust",
    "ferplus8-lite0",
)


def _card_figures(name: str) -> dict[str, Any]:
    """The card's headline: accuracy as served, then the other test-time augmentations' in order."""
    text = (CARDS / f"{name}.md").read_text()
    main = re.search(r"Accuracy \*\*([\d.]+)%\*\* on (\d+) test images[^\n]*?test-time augmentation: ([^)]*)\)", text)
    clean = re.search(r"accuracy \*\*([\d.]+)%\*\* on (\d+) images", text)
    ece = re.search(r"ECE ([\d.]+) before and ([\d.]+) after", text)
    assert main and clean and ece, name
    others = {method: float(value) for value, method in re.findall(r"([\d.]+)% with ([a-z ]+)", main[3])}
    assert set(others) in ({"horizontal flips", "ten crops"}, {"none", "ten crops"}), (name, others)
    return {
        "accuracy": float(main[1]),
        "samples": float(main[2]),
        "others": list(others.values()),
        "clean": float(clean[1]),
        "clean_samples": float(clean[2]),
        "ece_before": float(ece[1]),
        "ece_after": float(ece[2]),
    }


def _numbers(cell: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*\.?\d*", cell)]


def _table_row(text: str, name: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(f"| `{name}`")]
    assert len(rows) == 1, f"{name}: {len(rows)} table rows"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


@pytest.mark.parametrize("name", SHIPPED)
def test_models_page_table_matches_the_model_card(name: str):
    card = _card_figures(name)
    text = (ROOT / "docs" / "models.md").read_text()
    table = text[text.index("## Shipped models") :]
    cells = _table_row(table, name)
    assert _numbers(cells[2])[-1] == card["samples"]  # "PrivateTest (3,589)"
    assert _numbers(cells[3]) == [card["accuracy"], *card["others"]]
    assert _numbers(cells[4]) == [card["clean"], card["clean_samples"]]
    assert _numbers(cells[5]) == [card["ece_after"], card["ece_before"]]


@pytest.mark.parametrize("name", SHIPPED)
def test_docs_model_table_matches_the_model_card(name: str):
    card = _card_figures(name)
    text = (ROOT / "docs" / "experiments.md").read_text()
    cells = _table_row(text[text.index("## Shipped models") :], name)
    accuracy = _numbers(cells[2])
    assert accuracy[0] == card["accuracy"] and card["samples"] in accuracy
    if name != "ferplus8":  # the FER2013 models list their TTA figures here too
        assert all(figure in accuracy for figure in card["others"])
    assert _numbers(cells[3]) == [card["clean"]]


@pytest.mark.parametrize("name", SHIPPED)
def test_front_ends_show_the_cards_accuracy(name: str):
    """The app and GET /v1/models show the card's float32 test accuracy, not the trainer's bf16 one."""
    from ferlab.inference.catalog import model_summary
    from ferlab.inference.predictor import load

    summary = model_summary(load(name).record, name)
    assert round(100 * summary["test"]["accuracy"], 2) == _card_figures(name)["accuracy"]


def test_the_card_names_where_a_model_trained_in_good_grammar() -> None:
    from ferlab.evaluation.card import _where_trained
    from ferlab.models.record import Training

    assert _where_trained(Training(), {"threads": 1}) == "1 CPU thread"
    assert _where_trained(Training(), {"threads": 2}) == "2 CPU threads"
    assert _where_trained(Training(), {}) == "the CPU"
