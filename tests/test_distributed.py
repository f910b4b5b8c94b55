"""Device choice and 2-process DistributedDataParallel training on the CPU (gloo), on the tiny blob data.

Each DDP test starts real processes through `ferlab train --nproc 2` (torch.distributed.run),
so they take a few seconds each for the process starts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_names, fails_with
from ferlab.errors import FerlabError
from ferlab.models.bundle import load_bundle
from ferlab.training.config import build_config, load_config
from ferlab.training.device import Runtime, choose_precision, resolve_device
from ferlab.training.distributed import KILL_AFTER_EPOCH
from ferlab.training.entry import resume, train
from ferlab.training.trainer import Trainer

CLI = "from ferlab.cli.main import app; app(prog_name='ferlab')"


def write_config(path: Path, data: Path, epochs: int = 3) -> Path:
    path.write_text(
        f"name: ddp\ndata:\n  path: {data}\nmodel:\n  name: baseline_cnn\n  params: {{input_size: 24}}\n"
        f"train:\n  epochs: {epochs}\n  batch_size: 16\n  lr: 0.003\n  early_stopping_patience: 10\n  threads: 1\n"
    )
    return path


def ferlab(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def test_device_auto_picks_the_cpu_on_a_machine_without_a_gpu(blob_data: Path) -> None:
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == torch.device("cpu")
    trainer = Trainer(build_config({"name": "x", "data": {"path": str(blob_data)}}), Path("unused"))
    assert trainer.device == "auto" and trainer.data is None  # the constructor decides and loads nothing
    assert choose_precision(torch.device("cpu"), want_bf16=False) == "fp32"
    with pytest.raises(FerlabError, match="no CUDA GPU"):
        resolve_device("cuda")
    with fails_with(FerlabError, "train.device", "gpu", "cuda:N", "mps"):  # the key, the value, allowed ones
        build_config({"name": "x", "data": {"path": "x"}, "train": {"device": "gpu"}})
    x = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    from ferlab.data.tensors import normalize

    prepared = Runtime(torch.device("cpu"), channels_last=False).prepare(x, [0.5], [0.25])
    assert torch.equal(prepared, normalize(x, [0.5], [0.25]))  # the CPU path's arithmetic, unchanged


def test_the_default_bf16_trains_in_float32_without_a_warning_on_a_cpu_that_only_emulates_bf16(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ferlab.training import device

    monkeypatch.setattr(device, "native_bf16", lambda: True)
    assert choose_precision(torch.device("cpu"), want_bf16=True) == "bf16"
    monkeypatch.setattr(device, "native_bf16", lambda: False)
    with caplog.at_level(logging.INFO, logger="ferlab"):
        assert choose_precision(torch.device("cpu"), want_bf16=True) == "fp32"
    assert [r.levelno for r in caplog.records] == [logging.INFO] and "float32" in caplog.text


@pytest.mark.slow  # four process launches: about a minute on an idle 2-core machine, more on a busy one
def test_two_gloo_processes_train_one_run_folder_resume_after_a_kill_and_match_one_process(
    blob_data: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "ddp.yaml", blob_data)
    _, single = train(load_config(config, ["name=single"]), tmp_path / "single")

    runs = tmp_path / "runs"
    done = ferlab("train", config, "--nproc", 2, "--device", "cpu", "--runs-dir", runs)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["ddp"]  # one run folder, written by rank 0 alone
    assert done.stdout.count("best epoch") == 1  # one report, from rank 0
    log = (runs / "ddp" / "train.log").read_text().splitlines()
    assert len(log) == 3 and all(line.startswith("epoch ") for line in log)
    metrics = json.loads((runs / "ddp" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["device"] == "cpu"
    assert abs(metrics["val"]["accuracy"] - single["val"]["accuracy"]) <= 0.01
    assert load_bundle(runs / "ddp").record.training.world_size == 2

    killed = tmp_path / "killed"
    cut = ferlab("train", config, "--nproc", 2, "--runs-dir", killed, env={KILL_AFTER_EPOCH: "1"})
    assert cut.returncode != 0 and not (killed / "ddp" / "metrics.json").exists()
    assert len(json.loads((killed / "ddp" / "history.json").read_text())) == 1
    shutil.copytree(killed / "ddp", tmp_path / "one-process")

    again = ferlab("train", "--resume", killed / "ddp", "--nproc", 2)
    assert again.returncode == 0, again.stderr[-3000:]
    log = (killed / "ddp" / "train.log").read_text()
    resumed_line = next(line for line in log.splitlines() if line.startswith("# resumed"))
    assert_names(resumed_line, "epoch 1", "2 process(es)")
    assert "different" not in resumed_line
    full, resumed = load_bundle(runs / "ddp").model.state_dict(), load_bundle(killed / "ddp").model.state_dict()
    for key in full:  # a resumed run ends where the uninterrupted one ends
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=0, msg=key)

    _, finished = resume(tmp_path / "one-process")  # the same checkpoint, continued by one process
    log = (tmp_path / "one-process" / "train.log").read_text()
    assert_names(next(line for line in log.splitlines() if "1 process(es)" in line), "different", "2")
    assert finished["epochs_run"] == 3 and finished["processes"] == 1


def test_the_global_batch_must_split_over_the_processes(blob_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")  # as torchrun would set it; no process group is joined before the check
    monkeypatch.setattr("ferlab.training.device.init_process_group", lambda ranks, device: None)
    config = load_config(write_config(tmp_path / "ddp.yaml", blob_data), ["train.batch_size=16"])
    with fails_with(FerlabError, "train.batch_size 16", "3"):  # the batch, the process count
        Trainer(config, tmp_path / "x").prepare()


@pytest.mark.slow  # two process launches
def test_without_batch_norm_or_dropout_two_processes_compute_the_one_process_run(
    blob_data: Path, tmp_path: Path
) -> None:
    # Every rank augments and mixes the same global batch and trains on its half, and DDP averages
    # the halves' gradients: without batch norm (per-slice statistics) or dropout (per-rank draws)
    # that is the one-process step, up to float rounding. SGD keeps that rounding small (Adam would
    # turn a rounding-sized gradient into a full lr-sized step of either sign).
    config = tmp_path / "exact.yaml"
    config.write_text(
        f"name: exact\ndata:\n  path: {blob_data}\nmodel:\n  name: vgg13_fer\n  params: "
        "{input_size: 48, batch_norm: false, dropout: 0.0, fc: 64, fc_dropout: 0.0}\n"
        "augment:\n  policy: both\ntrain:\n  epochs: 2\n  batch_size: 16\n  optimizer: sgd\n  lr: 0.01\n"
        "  mixup_alpha: 0.2\n"
        "  scheduler: none\n  threads: 1\n  bf16: false\n"  # fp32: bf16 rounding (on CPUs that have it) is too coarse
    )
    _, single = train(load_config(config), tmp_path / "one")
    done = ferlab("train", config, "--nproc", 2, "--runs-dir", tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = load_bundle(tmp_path / "one" / "exact").model, load_bundle(tmp_path / "two" / "exact").model
    for (key, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=key)
    ddp = json.loads((tmp_path / "two" / "exact" / "metrics.json").read_text())
    assert ddp["val"]["accuracy"] == single["val"]["accuracy"]
    history = json.loads((tmp_path / "two" / "exact" / "history.json").read_text())
    assert history[0]["train_loss"] == pytest.approx(single_history(tmp_path)[0]["train_loss"], rel=1e-4)


def single_history(tmp_path: Path) -> list[dict]:
    return json.loads((tmp_path / "one" / "exact" / "history.json").read_text())
