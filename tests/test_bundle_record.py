"""A model file is its weights and its record; older files are converted once, on load; no side
effects on import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from ferlab.models.bundle import OLD_BUNDLE_FORMAT, load_bundle, save_bundle
from ferlab.models.record import ModelRecord
from ferlab.training.device import PRECISION_LABELS, choose_precision

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "ferlab" / "weights"


def test_shipped_old_format_models_load_with_every_fact_of_their_old_dicts() -> None:
    for name in ("ferplus8", "fer2013-7", "five"):
        raw = torch.load(WEIGHTS / f"{name}.pt", weights_only=True)
        assert raw["format"] == OLD_BUNDLE_FORMAT and "record" not in raw  # shipped as written, never rewritten
        spec, info = raw["spec"], raw["info"]
        record = load_bundle(WEIGHTS / f"{name}.pt").record
        assert (record.arch, dict(record.arch_options), record.gradcam_layer) == (
            spec["name"],
            spec["config"],
            spec["gradcam_layer"],
        )
        assert (record.classes, record.temperature) == (tuple(raw["label_set"]["classes"]), raw["temperature"])
        assert (record.run, record.training_data, record.tta) == (info["run"], info["data"], info.get("tta", "none"))
        assert record.class_prior == (None if info.get("class_prior") is None else tuple(info["class_prior"]))
        training = record.training
        assert (training.split_seed, training.teacher, training.device) == (0, info.get("teacher"), info.get("device"))
        assert training.metrics["val"] == info["metrics"]["val"] and "classes" not in training.metrics


def test_a_new_model_file_is_its_record_and_weights_in_plain_values(blob_model: Path, tmp_path: Path) -> None:
    bundle = load_bundle(blob_model)
    record, training = bundle.record, bundle.record.training
    assert record.run == "blobs" and training.device == "cpu" and training.world_size == 1
    trained_in = PRECISION_LABELS[choose_precision(torch.device("cpu"), want_bf16=True)]  # bf16 where the CPU has it
    assert training.precision == trained_in and training.split_seed == 0
    assert len(record.class_prior or ()) == 3 and record.validation is not None
    assert record.gradcam_layer == bundle.model.gradcam_layer and record.input_size == bundle.model.input_size
    save_bundle(bundle, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)  # plain dicts, no dataclass pickled
    assert set(saved) == {"format", "record", "state_dict"} and isinstance(saved["record"], dict)
    assert load_bundle(tmp_path / "m.pt").record == record == ModelRecord.from_dict(record.to_dict())


def test_an_older_file_converts_once_on_load_and_an_old_run_folder_gives_its_split_seed(
    blob_model: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(blob_model)
    record = bundle.record
    spec = {
        "name": record.arch,
        "num_classes": record.num_classes,
        "input_size": record.input_size,
        "in_channels": record.in_channels,
        "gradcam_layer": record.gradcam_layer,
        "input_mean": record.input_mean,
        "input_std": record.input_std,
        "config": dict(record.arch_options),
        "pretrained": None,
        "transfer": False,
    }
    metrics = {**record.training.metrics, "classes": list(record.classes), "precision": record.training.precision}
    info = {
        "run": "blobs",
        "data": record.training_data,
        "metrics": metrics,
        "class_prior": list(record.class_prior or []),
    }
    old = {
        "format": OLD_BUNDLE_FORMAT,
        "spec": spec,
        "state_dict": bundle.model.state_dict(),
        "label_set": {"name": record.label_set, "classes": list(record.classes)},
        "temperature": record.temperature,
        "info": info,  # as written before the split seed and the device were kept
    }
    run = tmp_path / "old-run"
    run.mkdir()
    torch.save(old, run / "model.pt")
    (run / "config.yaml").write_text("data:\n  path: x\n  split_seed: 7\ntrain:\n  teacher: t.pt\n")
    converted = load_bundle(run).record
    assert converted.training.split_seed == 7 and converted.training.teacher == "t.pt"
    assert converted.training.distill_weight is None and converted.training.metrics == record.training.metrics
    assert (converted.weights_digest, converted.classes, converted.headline) == (
        record.weights_digest,
        record.classes,
        record.headline,
    )
    old["record"] = record.with_facts(name="kept", description="from the stored record").to_dict()
    torch.save(old, tmp_path / "both.pt")  # the last old version stored both
    both = load_bundle(tmp_path / "both.pt").record
    assert (both.name, both.description, both.gradcam_layer) == ("kept", "from the stored record", record.gradcam_layer)


def test_importing_ferlab_training_changes_no_process_state() -> None:
    code = (
        "import matplotlib, torch; backend = matplotlib.get_backend(); threads = torch.get_num_threads();"
        "import ferlab.training.entry, ferlab.training.runs, ferlab.cli.main;"
        "from ferlab.training.trainer import Trainer; from ferlab.training.config import build_config;"
        "from pathlib import Path; t = Trainer(build_config({'name': 'x', 'data': {'path': '/x'}}), Path('/x'));"
        "assert matplotlib.get_backend() == backend, matplotlib.get_backend();"
        "assert torch.get_num_threads() == threads; assert t.data is None; print('ok')"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}  # a notebook's backend, say: importing ferlab must keep it
    command = [sys.executable, "-c", "import torch; torch.set_num_threads(1);" + code]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
