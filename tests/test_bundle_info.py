"""BundleInfo: the typed provenance of a model file, old files converted on load; no side effects on import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from ferlab.models.bundle import BundleInfo, load_bundle, save_bundle
from ferlab.training.device import PRECISION_LABELS, choose_precision

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "ferlab" / "weights"


def test_shipped_old_format_models_load_as_bundle_info_unchanged() -> None:
    for name in ("ferplus8", "fer2013-7", "five"):
        raw = torch.load(WEIGHTS / f"{name}.pt", weights_only=True)["info"]
        info = load_bundle(WEIGHTS / f"{name}.pt").info
        assert isinstance(info, BundleInfo)
        assert (info.run, info.data, info.metrics) == (raw["run"], raw["data"], raw["metrics"])
        assert info.class_prior == raw.get("class_prior") and info.split_seed == 0 and info.extra == {}
        assert info.to_dict().items() >= raw.items()  # saved again, nothing of the old dict is lost


def test_bundle_info_round_trips_as_plain_values(blob_model: Path, tmp_path: Path) -> None:
    bundle = load_bundle(blob_model)
    info = bundle.info
    assert info.run == "blobs" and info.device == "cpu" and info.world_size == 1
    trained_in = PRECISION_LABELS[choose_precision(torch.device("cpu"), want_bf16=True)]  # bf16 where the CPU has it
    assert info.precision == trained_in and info.metrics["precision"] == trained_in and info.split_seed == 0
    assert len(info.class_prior or []) == 3
    bundle.info.extra["note"] = "kept"
    save_bundle(bundle, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)["info"]  # a plain dict, no dataclass pickled
    assert isinstance(saved, dict) and saved["note"] == "kept" and saved["device"] == "cpu"
    assert load_bundle(tmp_path / "m.pt").info == bundle.info
    # code written against the old dict keeps reading it: apps, the predictor's prior, scripts
    assert info.get("run") == "blobs" and info.get("teacher", "none") == "none" and info["class_prior"]
    assert info.get("metrics", {})["val"] == info.metrics["val"]


def test_an_old_run_folder_model_takes_its_split_seed_from_its_config(blob_model: Path, tmp_path: Path) -> None:
    run = tmp_path / "old-run"
    run.mkdir()
    data = torch.load(blob_model / "model.pt", weights_only=True)
    data["info"] = {k: data["info"][k] for k in ("run", "data", "metrics", "class_prior")}  # as written before
    torch.save(data, run / "model.pt")
    (run / "config.yaml").write_text("data:\n  path: x\n  split_seed: 7\ntrain:\n  teacher: t.pt\n")
    info = load_bundle(run).info
    assert info.split_seed == 7 and info.teacher == "t.pt" and info.distill_weight is None


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
