"""Issue 16, hardening: no code runs from a file, no traceback from a bad value, one-line errors.

Each test here failed before its fix. Training tests use the tiny blob data set and one or
two epochs; process tests start the real `ferlab` command.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import (
    assert_names,
    cli_error,
    fails_with,
    free_port,
    invoke,
    make_class_tree,
    predict_upload_scope,
    tiny_config,
)
from ferlab.errors import FerlabError
from ferlab.models.bundle import load_bundle
from ferlab.training.checkpoint import rng_states, set_rng_states
from ferlab.training.config import RANGES, build_config, load_config
from ferlab.training.entry import resume, train
from ferlab.training.trainer import Trainer, TrainingInterrupted

ROOT = Path(__file__).resolve().parents[1]
NO_SPACE = os.strerror(errno.ENOSPC)


# -- checkpoints are data, never code -------------------------------------------------------


class Payload:
    """Unpickling this creates a marker folder: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def crafted_run(blob_data: Path, runs: Path, marker: Path) -> Path:
    """A run folder whose config matches, with a last.pt that runs code when unpickled."""
    config = build_config({"name": "shared"}, tiny_config(blob_data))
    run_dir = runs / "shared"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    torch.save({"model": {}, "state": {}, "rng": Payload(marker)}, run_dir / "last.pt")
    return run_dir


def test_a_crafted_last_pt_runs_no_code_on_resume_or_implicit_resume(blob_data: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    run_dir = crafted_run(blob_data, tmp_path / "runs", marker)
    with pytest.raises(pickle.UnpicklingError):  # the file really is hostile
        torch.load(run_dir / "last.pt", weights_only=True)

    line = cli_error(invoke("train", "--resume", run_dir), run_dir / "last.pt", "Python objects")  # explicit resume
    assert "weights_only" not in line
    config = tmp_path / "shared.yaml"  # the same config trained again into that folder: implicit resume
    config.write_text(yaml.safe_dump(build_config({"name": "shared"}, tiny_config(blob_data)).to_dict()))
    cli_error(invoke("train", config, "--runs-dir", tmp_path / "runs"), run_dir / "last.pt", "Python objects")
    assert not marker.exists()


def test_no_weights_only_false_anywhere_in_the_tree() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("src", "tests", "benchmarks")
        if (ROOT / folder).is_dir()
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"weights_only\s*=\s*False", path.read_text()) and path.name != "test_hardening.py"
    ]
    assert offenders == []


def test_checkpoints_hold_only_tensors_and_plain_values(blob_data: Path, tmp_path: Path) -> None:
    for scheduler in ("cosine", "plateau"):
        run_dir, _ = train(
            build_config(
                {"name": scheduler},
                tiny_config(blob_data, **{"train.scheduler": scheduler, "finetune.enabled": "false"}),
            ),
            tmp_path,
        )
        saved = torch.load(run_dir / "last.pt", weights_only=True)  # raises if anything else is inside
        assert saved["state"]["epoch_in_phase"] == 1


def test_rng_states_round_trip_and_old_checkpoints_still_resume(tmp_path: Path) -> None:
    states = rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_states(states)
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    # A checkpoint written before this change pickled NumPy's state tuple: the exact NumPy
    # types are allow-listed, so a run killed under the old code still resumes.
    torch.save(
        {"rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}},
        tmp_path / "old.pt",
    )
    from ferlab.models.bundle import load_torch_file
    from ferlab.training.checkpoint import _OLD_NUMPY_RNG_TYPES

    old = load_torch_file(tmp_path / "old.pt", "checkpoint", allow=_OLD_NUMPY_RNG_TYPES)
    set_rng_states(old["rng"])


def test_a_truncated_last_pt_is_a_one_line_error(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, _ = train(build_config({"name": "cut"}, tiny_config(blob_data, **{"train.epochs": 2})), tmp_path)
    (run_dir / "metrics.json").unlink()
    data = (run_dir / "last.pt").read_bytes()
    (run_dir / "last.pt").write_bytes(data[: len(data) // 2])
    cli_error(invoke("train", "--resume", run_dir), run_dir / "last.pt", "cut short")


def test_a_garbage_model_error_does_not_advise_weights_only_false(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"format": "ferlab-model/1", "spec": Payload(marker)}, tmp_path / "model.pt")
    with pytest.raises(FerlabError) as error:
        load_bundle(tmp_path / "model.pt")
    message = str(error.value)
    assert "weights_only" not in message and "\n" not in message and not marker.exists()
    (tmp_path / "zip.pt").write_bytes(b"PK\x03\x04" + os.urandom(200))
    with fails_with(FerlabError, tmp_path / "zip.pt", "readable"):
        load_bundle(tmp_path / "zip.pt")
    torch.save({"format": "ferlab-model/1", "spec": {"name": "baseline_cnn"}}, tmp_path / "half.pt")
    with fails_with(FerlabError, tmp_path / "half.pt", "damaged"):
        load_bundle(tmp_path / "half.pt")


# -- config values ----------------------------------------------------------------------------


def test_3e_minus_4_is_a_float_from_set_and_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("data:\n  path: x\ntrain:\n  lr: 3e-4\n  weight_decay: 1E-5\nmodel:\n  params: {dropout: 5e-1}\n")
    config = load_config(path)
    assert config.train.lr == 3e-4 and config.train.weight_decay == 1e-5 and config.model.params == {"dropout": 0.5}
    assert load_config(path, ["train.lr=3e-4"]).train.lr == pytest.approx(3e-4)
    assert load_config(path, ["name=v1-lr3e-4"]).name == "v1-lr3e-4"  # names stay strings


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=-0.001", "config train.lr = -0.001 is out of range: allowed 0 < train.lr <= 10"),
        (
            "train.weight_decay=-1",
            "config train.weight_decay = -1.0 is out of range: allowed 0 <= train.weight_decay <= 1",
        ),
        (
            "train.threads=-2",
            "config train.threads = -2 is out of range: allowed 0 <= train.threads <= 4096 (0 uses every core)",
        ),
        ("seed=-1", "config seed = -1 is out of range: allowed 0 <= seed <= 4294967295"),
        ("train.label_smoothing=5", "config train.label_smoothing = 5.0 is out of range"),
        ("data.max_train_samples=-5", "config data.max_train_samples = -5 is out of range"),
        (
            "data.max_train_samples=0",
            "allowed 1 <= data.max_train_samples <= 1000000000 (leave it out for every training image)",
        ),
        (
            "train.mixup_alpha=-0.2",
            "config train.mixup_alpha = -0.2 is out of range: allowed 0 <= train.mixup_alpha <= 100",
        ),
        ("train.early_stopping_patience=0", "config train.early_stopping_patience = 0 is out of range"),
        ("train.lr=.nan", "config train.lr = nan is out of range"),
        ("train.epochs=.inf", "config train.epochs must be a whole number, got inf"),
        ("augment.blur=1.5", "config augment.blur = 1.5 is out of range: allowed 0 <= augment.blur <= 1"),
        (
            "augment.blur_sigma=0",
            "config augment.blur_sigma = 0.0 is out of range: allowed 0 < augment.blur_sigma <= 24",
        ),
        ("augment.low_res_min=2", "config augment.low_res_min = 2 is out of range: allowed 4 <= augment.low_res_min"),
        ("augment.erase=-0.1", "config augment.erase = -0.1 is out of range"),
        ("train.lr=null", "config train.lr needs a value"),
        ("model.params=[1, 2]", "config model.params must be a table of options"),
    ],
)
def test_a_value_out_of_range_is_one_line_naming_key_value_and_range(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(FerlabError) as error:
        build_config({"name": "x", "data": {"path": str(tmp_path)}}, [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_every_numeric_key_has_a_range_and_the_defaults_are_in_it() -> None:
    config = build_config({"name": "x", "data": {"path": "x"}})
    numeric = {
        k
        for k, v in config.flat().items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("model.params")
    }
    numeric.add("data.max_train_samples")  # None by default, a number when set
    assert numeric == set(RANGES)
    docs = (ROOT / "docs" / "reliability.md").read_text()
    for key, allowed in RANGES.items():  # the documented table is this one
        assert f"`{allowed.describe(key)}`" in docs, key


def test_a_bad_value_fails_before_any_data_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ferlab.training.data as data_module

    monkeypatch.setattr(data_module, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    config = tmp_path / "bad.yaml"
    config.write_text(f"data:\n  path: {tmp_path}\ntrain:\n  lr: -0.001\n")
    allowed = RANGES["train.lr"].describe("train.lr")
    cli_error(invoke("train", config, "--runs-dir", tmp_path), "train.lr", "-0.001", allowed)
    config.write_text(f"data:\n  path: {tmp_path}\nmodel:\n  name: baseline_cnn\n  params: {{dropout: 7}}\n")
    cli_error(invoke("train", config, "--runs-dir", tmp_path), "dropout")


def test_max_train_samples_below_the_class_count_is_a_clear_error(blob_data: Path, tmp_path: Path) -> None:
    with fails_with(FerlabError, "max_train_samples", "2", "3 classes"):
        train(build_config({"name": "few"}, tiny_config(blob_data, **{"data.max_train_samples": 2})), tmp_path)
    _, metrics = train(
        build_config({"name": "three"}, tiny_config(blob_data, **{"data.max_train_samples": 3})), tmp_path
    )
    assert metrics["epochs_run"] == 1


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "", "a\\b", "x\ny", ".hidden", "a..b"])
def test_run_names_are_plain_folder_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(FerlabError, match="config name"):
        build_config({"name": "x", "data": {"path": "x"}}, [f"name={json.dumps(name)}"])


def test_set_name_cannot_write_outside_the_runs_folder(blob_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(blob_data)}}))
    runs = tmp_path / "a" / "b" / "runs"
    cli_error(invoke("train", config, "--runs-dir", runs, "--set", "name=../../x"), "name", "'../../x'")
    cli_error(invoke("train", config, "--runs-dir", runs, "--name", "../escape"), "'../escape'")
    assert not (tmp_path / "a" / "x").exists() and not (tmp_path / "a" / "b" / "escape").exists()


# -- sweeps -----------------------------------------------------------------------------------


def test_the_readme_sweep_promise_holds_for_any_failure(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/train.md: 'In a sweep, a config that fails is reported and the others still train; the
    command then exits with an error that names the failed runs.'"""
    readme = " ".join((ROOT / "docs" / "train.md").read_text().split())
    assert "a config that fails (a missing data folder, say) is reported and the others still train" in readme
    configs = []
    for name, data, lr in (
        ("missing-data", tmp_path / "nowhere", 0.001),
        ("bad-value", blob_data, -0.001),
        ("crashes", blob_data, 0.001),
        ("fine", blob_data, 0.001),
    ):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "name": name,
                    "data": {"path": str(data)},
                    "model": {"name": "baseline_cnn", "params": {"input_size": 24}},
                    "train": {"epochs": 1, "batch_size": 16, "lr": lr},
                }
            )
        )
        configs.append(path)

    original = Trainer.save_checkpoint

    def disk_full_for_one(self: Trainer) -> None:
        if self.config.name == "crashes":
            raise OSError(errno.ENOSPC, NO_SPACE)
        original(self)

    monkeypatch.setattr(Trainer, "save_checkpoint", disk_full_for_one)
    result = invoke("train", *configs, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert_names(next(line for line in errors if "bad-value" in line), "train.lr", "-0.001")
    assert_names(next(line for line in errors if "crashes" in line), tmp_path / "runs" / "crashes", NO_SPACE)
    assert_names(errors[-1], "3 of 4", "missing-data", "bad-value", "crashes")  # the failed runs, named at the end
    assert "fine" not in errors[-1]
    assert (tmp_path / "runs" / "fine" / "model.pt").is_file()


def test_an_unexpected_exception_in_one_config_does_not_stop_the_sweep(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Trainer.train_epoch

    def bug(self: Trainer, seed: tuple[int, ...]) -> dict[str, float]:
        if self.config.name == "first":
            raise RuntimeError("simulated bug")
        return original(self, seed)

    monkeypatch.setattr(Trainer, "train_epoch", bug)
    configs = []
    for name in ("first", "second"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "name": name,
                    "data": {"path": str(blob_data)},
                    "model": {"name": "baseline_cnn", "params": {"input_size": 24}},
                    "train": {"epochs": 1, "batch_size": 16},
                }
            )
        )
        configs.append(path)
    result = invoke("train", *configs, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert_names(next(line for line in result.output.splitlines() if "first" in line), "RuntimeError", "simulated bug")
    assert (tmp_path / "runs" / "second" / "model.pt").is_file()


def test_a_full_disk_in_a_single_run_is_one_line(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Trainer) -> None:
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(Trainer, "save_checkpoint", full)
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"path": str(blob_data)},
                "model": {"name": "baseline_cnn", "params": {"input_size": 24}},
                "train": {"epochs": 1, "batch_size": 16},
            }
        )
    )
    cli_error(invoke("train", config, "--runs-dir", tmp_path), NO_SPACE)


# -- interruptions and leftovers --------------------------------------------------------------


def test_ctrl_c_in_the_first_epoch_does_not_offer_a_resume(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: Trainer, seed: tuple[int, ...]) -> dict[str, float]:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    with pytest.raises(TrainingInterrupted) as error:
        train(build_config({"name": "early"}, tiny_config(blob_data)), tmp_path)
    assert "--resume" not in str(error.value) and "nothing to resume" in str(error.value)
    assert not (tmp_path / "early" / "last.pt").exists()


def test_a_stale_temporary_file_from_a_killed_save_is_removed(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Trainer._run_epoch

    def killed_in_second_epoch(self: Trainer, phase: object) -> None:
        if len(self.state.history) == 1:
            (self.run_dir / "tmpk1ll3d.tmp").write_bytes(b"half a checkpoint")  # what kill -9 mid-save leaves
            raise RuntimeError("killed")
        original(self, phase)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "_run_epoch", killed_in_second_epoch)
    with pytest.raises(RuntimeError, match="killed"):
        train(build_config({"name": "k"}, tiny_config(blob_data, **{"train.epochs": 2})), tmp_path)
    monkeypatch.setattr(Trainer, "_run_epoch", original)
    assert (tmp_path / "k" / "tmpk1ll3d.tmp").exists()
    resume(tmp_path / "k")
    assert list((tmp_path / "k").glob("*.tmp")) == []


def test_a_dangling_symlink_in_a_data_folder_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ferlab.data.loader import load_dataset

    root = make_class_tree(tmp_path / "faces", {"angry": 4, "happy": 4}, splits=())
    (root / "angry" / "gone.png").symlink_to(tmp_path / "deleted.png")
    with caplog.at_level("WARNING"):
        dataset = load_dataset(root)
    assert len(dataset.labels) == 8
    assert "angry/gone.png" in caplog.text


# -- the servers --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "app"])
@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_a_port_out_of_range_is_one_line(command: str, port: str) -> None:
    cli_error(invoke(command, "--port", port), "--port", "65535", port)


def test_an_infinite_pixel_cap_is_one_line() -> None:
    cli_error(invoke("serve", "--max-megapixels", "inf"), "--max-megapixels", "inf")


# -- API limits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_predictor():
    """A predictor around an untrained model: enough to test HTTP limits, no training needed."""
    from ferlab.inference.predictor import Predictor
    from ferlab.labels import LabelSet
    from ferlab.models.bundle import ModelBundle
    from ferlab.models.registry import create_model

    bundle = ModelBundle.of(
        create_model("baseline_cnn", 3, input_size=24).eval(), LabelSet("limits", ("angry", "happy", "sad"))
    )
    return Predictor(bundle, detector="haar", backend="torch")


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds almost nothing: a few hundred bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_api_headers_that_crash_pillow_plugins_are_400_not_500(untrained_predictor) -> None:
    from fastapi.testclient import TestClient

    from ferlab.apps.api import create_app

    dds = bytes.fromhex(  # a DDS header with an unknown pixel format: NotImplementedError in Image.open
        "444453207c0000000f1000002000000020000000600000000000000000000000000000ffffffdc000000000000000000"
        "00000000000000000000000000000000000000000000000000000000200000000400000000000083180000000000ff00"
        "00ff0000ff000000000000000010000000000000000000000000000000000000"
    )
    with TestClient(create_app(untrained_predictor)) as client:
        response = client.post("/v1/predict", files={"file": ("x.dds", dds, "application/octet-stream")})
        assert response.status_code == 400 and response.json()["error"] == "not_an_image", response.text


def test_api_deep_json_and_odd_detect_values_are_4xx(untrained_predictor) -> None:
    from fastapi.testclient import TestClient

    from ferlab.apps.api import create_app

    with TestClient(create_app(untrained_predictor)) as client:
        for body in (
            b"[" * 100_000 + b"]" * 100_000,
            b'{"image": "eA==", "detect": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        ):
            response = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400 and response.json()["error"] == "bad_json", response.text
        response = client.post("/v1/predict", json={"image": "eA==", "detect": [[[[True]]]]})
        assert response.status_code == 422 and response.json()["error"] == "invalid_detect"


def test_api_answers_413_for_every_image_over_the_pixel_cap(untrained_predictor) -> None:
    from fastapi.testclient import TestClient

    from ferlab.apps.api import API_MAX_PIXELS, create_app

    assert API_MAX_PIXELS == 25_000_000
    with TestClient(create_app(untrained_predictor)) as client:
        for side in (30_000, 7_000):  # over Pillow's own bomb limit; just under the old 50 MP cap
            data = png_header(side, side)
            assert len(data) < 1_000
            response = client.post("/v1/predict", files={"file": ("big.png", data, "image/png")})
            assert response.status_code == 413 and response.json()["error"] == "image_too_large", response.text


def test_serve_uses_the_api_pixel_cap(untrained_predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import ferlab.inference.predictor as predictor_module
    from ferlab.apps import api

    created: dict = {}
    monkeypatch.setattr(predictor_module, "load", lambda *a, **k: untrained_predictor)
    monkeypatch.setattr(api, "create_app", lambda *a, **k: created.update(k) or object())
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    assert invoke("serve", "--max-megapixels", "2").exit_code == 0
    assert created["max_pixels"] == 2_000_000
    assert invoke("serve").exit_code == 0 and created["max_pixels"] == 25_000_000


def test_api_a_stalled_body_gets_408_instead_of_holding_the_connection(untrained_predictor) -> None:
    import time

    import anyio

    from ferlab.apps.api import create_app

    app = create_app(untrained_predictor, body_idle_timeout=0.5, body_timeout=30)

    async def stalled_upload() -> list[dict]:
        messages: list[dict] = []
        first = True

        async def receive() -> dict:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b'{"image": "', "more_body": True}
            await anyio.sleep(3600)  # the client stops sending mid-body
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            messages.append(message)

        scope = predict_upload_scope(b"application/json", ("127.0.0.1", 5000))
        with anyio.fail_after(20):
            await app(scope, receive, send)
        return messages

    started = time.monotonic()
    messages = anyio.run(stalled_upload)
    assert messages[0]["status"] == 408 and time.monotonic() - started < 15
    assert b"request_timeout" in messages[1]["body"]


# -- ferlab app stops cleanly -------------------------------------------------------------------


def listening(port: int) -> bool:
    import socket

    with socket.socket() as client:
        client.settimeout(1)
        return client.connect_ex(("127.0.0.1", port)) == 0


def kill_leftovers(port: int) -> None:
    """Kill, by pid, any process this test started that still serves `port` (the pre-fix orphan)."""
    import signal

    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(argv) and str(port).encode() in argv:
            os.kill(int(proc.name), signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child through /proc")
def test_sigterm_to_ferlab_app_stops_streamlit_and_frees_the_port(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time

    port = free_port()
    ferlab = Path(sys.executable).with_name("ferlab")
    app_process = subprocess.Popen(
        [str(ferlab), "app", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 240  # a loaded 2-core machine starts Streamlit slowly
        while not listening(port):
            assert app_process.poll() is None, "ferlab app exited before serving"
            assert time.monotonic() < deadline, "Streamlit never started listening"
            time.sleep(0.5)
        app_process.send_signal(signal.SIGTERM)
        app_process.wait(timeout=60)
        with socket.socket() as server:  # the port is free again: the next `ferlab app` can start
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
    finally:
        if app_process.poll() is None:
            app_process.kill()
        kill_leftovers(port)


# -- predict, video, explain ----------------------------------------------------------------------


def test_predict_with_no_readable_input_exits_2(tmp_path: Path) -> None:
    result = invoke("predict", tmp_path / "nosuch.jpg", "--detector", "haar")
    cli_error(result, "1 input(s)")
    assert str(tmp_path / "nosuch.jpg") in result.output


def test_predict_refuses_an_out_that_cannot_take_the_table_before_it_starts(tmp_path: Path) -> None:
    from conftest import synthetic_face, write_image

    photo = write_image(tmp_path / "face.jpg", synthetic_face(0))
    before = photo.read_bytes()
    (tmp_path / "file").write_text("not a folder")
    for out, facts in (
        (photo, [".csv", ".json"]),  # an input photo: it used to become CSV text
        (tmp_path, ["folder"]),
        (tmp_path / "rows.txt", [".csv", ".json"]),
        (tmp_path / "file" / "rows.csv", [tmp_path / "file", "not a folder"]),
    ):
        cli_error(invoke("predict", photo, "--no-detect", "--out", out), "--out", out, *facts)
    assert photo.read_bytes() == before
    notes = tmp_path / "notes.csv"
    notes.write_text("kept\n")
    cli_error(invoke("predict", photo, notes, "--no-detect", "--out", notes), "--out", notes, "input")
    assert notes.read_text() == "kept\n"
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    done = invoke("predict", photo, tmp_path / "broken.jpg", "--no-detect", "--out", tmp_path / "rows.csv")
    assert done.exit_code == 0, done.output
    with (tmp_path / "rows.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == [str(photo), str(tmp_path / "broken.jpg")]  # the unreadable one too
    assert rows[0]["label"] and not rows[0]["reason"] and rows[1]["reason"].startswith("not read: ")


def test_predict_takes_an_existing_name_with_brackets_literally(tmp_path: Path) -> None:
    from conftest import synthetic_face, write_image

    write_image(tmp_path / "photo[1].png", synthetic_face(0))
    write_image(tmp_path / "photo1.png", synthetic_face(1))  # what the glob "photo[1].png" would match
    result = invoke("predict", tmp_path / "photo[1].png", "--no-detect", "--out", tmp_path / "rows.json")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [Path(row["file"]).name for row in rows] == ["photo[1].png"]


def test_predict_folders_leave_out_hidden_files_and_name_heic_photos_they_skip(tmp_path: Path) -> None:
    from conftest import synthetic_face, write_image

    write_image(tmp_path / "album" / "x.png", synthetic_face(0))
    (tmp_path / "album" / "._x.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata
    (tmp_path / "album" / "IMG_1.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    result = invoke("predict", tmp_path / "album", "--no-detect", "--out", tmp_path / "rows.json")
    assert result.exit_code == 0, result.output
    assert [Path(row["file"]).name for row in json.loads((tmp_path / "rows.json").read_text())] == ["x.png"]
    assert "1 HEIC photo(s)" in result.output


def test_predict_annotations_of_same_named_photos_never_overwrite_each_other(tmp_path: Path) -> None:
    from conftest import synthetic_face, write_image

    for path in ("a/x.1.png", "a/x.png", "b/x.png", "c/x.png"):
        write_image(tmp_path / path, synthetic_face(0))
    result = invoke(
        "predict", tmp_path / "a", tmp_path / "b", tmp_path / "c", "--no-detect", "--annotate", tmp_path / "out"
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").iterdir())) == 4


def test_video_smoothing_out_of_range_is_one_line(tmp_path: Path) -> None:
    cli_error(invoke("video", tmp_path / "clip.mp4", "--smoothing", "5"), "--smoothing", "5")


def test_explain_to_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    from conftest import synthetic_face, write_image

    face = write_image(tmp_path / "face.png", synthetic_face(0))
    (tmp_path / "file").write_text("not a folder")
    cli_error(invoke("explain", face, "--no-detect", "--out", tmp_path / "file" / "cam.png"), tmp_path / "file")
