"""Issue 30, hardening round two: odd file names, damaged caches, full disks, stalled sockets.

Each test here failed on the code before its fix. Fixtures are generated: class trees of
synthetic faces, a tiny trained model, sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import cli_error, free_port, invoke, make_class_tree, predict_upload_scope, synthetic_face, write_image
from ferlab.errors import FerlabError

NO_SPACE = os.strerror(errno.ENOSPC)
NOT_UTF8 = b"caf\xe9.png"  # Latin-1, as a Windows archive unpacks it


def tree_with_a_latin1_name(root: Path) -> Path:
    make_class_tree(root, {"angry": 4, "happy": 4}, splits=())
    os.rename(os.fsencode(root / "angry" / "00000.png"), os.fsencode(root / "angry") + b"/" + NOT_UTF8)
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained-but-saved 24 px model (seconds), so tests need no shipped weights."""
    from ferlab.labels import LabelSet
    from ferlab.models.bundle import ModelBundle, save_bundle
    from ferlab.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("baseline_cnn", 3, input_size=24)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_bundle(ModelBundle.of(model, LabelSet("custom", ("angry", "happy", "sad"))), path)
    return path


# -- 1. file names that are not UTF-8 -----------------------------------------------------------


def test_shown_names_are_utf8_and_give_back_the_exact_bytes() -> None:
    from ferlab.data.paths import shown, unshown

    for raw in (NOT_UTF8, b"a\\\xe9", b"a\\xe9", b"a\\\\xe9\xff", b"C:\\photos\\x.jpg", "café".encode(), b"\xff"):
        text = shown(os.fsdecode(raw))
        text.encode("utf-8")  # writable to any UTF-8 file or terminal
        assert unshown(text) == raw
    assert shown("plain/name.png") == "plain/name.png"


@pytest.mark.parametrize("command", [("data", "info"), ("data", "audit")])
def test_data_commands_read_a_folder_with_a_name_that_is_not_utf8(tmp_path: Path, command: tuple[str, ...]) -> None:
    root = tree_with_a_latin1_name(tmp_path / "faces")
    shutil.copy(os.fsencode(root / "angry") + b"/" + NOT_UTF8, root / "happy" / "copy.png")  # a duplicate pair
    extra = ["--out", str(tmp_path / "audit")] if command[1] == "audit" else []
    result = invoke(*command, root, *extra)
    assert result.exit_code == 0, result.output
    if command[1] == "audit":
        with (tmp_path / "audit" / "pairs.csv").open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert "angry/caf\\xe9.png" in {row["source_a"] for row in rows} | {row["source_b"] for row in rows}


def test_training_on_a_folder_with_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    from ferlab.data.loader import load_dataset

    root = tree_with_a_latin1_name(tmp_path / "faces")
    dataset = load_dataset(root)
    assert "angry/caf\\xe9.png" in dataset.sources.tolist()
    assert load_dataset(root).sources.tolist() == dataset.sources.tolist()  # the cache round-trips it


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_predict_writes_every_row_with_a_name_that_is_not_utf8(tiny_model: Path, tmp_path: Path, suffix: str) -> None:
    from ferlab.data.paths import path_of_shown

    folder = tmp_path / "photos"
    write_image(folder / "a.png", synthetic_face(0))
    bad = os.fsencode(folder) + b"/" + NOT_UTF8
    write_image(Path(os.fsdecode(bad)), synthetic_face(1))
    out = tmp_path / f"rows{suffix}"
    result = invoke("predict", folder, "--model", tiny_model, "--no-detect", "--backend", "torch", "--out", out)
    assert result.exit_code == 0, result.output
    if suffix == ".csv":
        with out.open(encoding="utf-8") as handle:
            files = [row["file"] for row in csv.DictReader(handle)]
    else:
        files = [row["file"] for row in json.loads(out.read_text(encoding="utf-8"))]
    assert len(files) == 2
    assert os.fsencode(path_of_shown(files[1])) == bad  # the original bytes, recovered


# -- 2. a damaged ONNX file in the cache ---------------------------------------------------------


def cached_export(tiny_model: Path) -> Path:
    from ferlab.inference.predictor import load

    load(str(tiny_model), detector="haar", backend="onnx")
    from ferlab.inference.engine import onnx_cache_dir

    (export,) = onnx_cache_dir().glob("*.onnx")
    return export


def another_models_export(tmp_path: Path) -> bytes:
    """A valid ONNX file of a 5-class 32 px model: the wrong file under the right name."""
    from ferlab.inference.engine import export_onnx
    from ferlab.labels import LabelSet
    from ferlab.models.bundle import ModelBundle
    from ferlab.models.registry import create_model

    bundle = ModelBundle.of(
        create_model("baseline_cnn", 5, input_size=32), LabelSet("five", ("angry", "happy", "sad", "fear", "neutral"))
    )
    return export_onnx(bundle, tmp_path / "other.onnx").read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "another model"])
def test_a_damaged_cached_onnx_is_set_aside_and_rebuilt(
    tiny_model: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    from ferlab.inference.predictor import load

    export = cached_export(tiny_model)
    good = export.read_bytes()
    export.write_bytes(
        {
            "truncated": good[: len(good) // 2],
            "random": np.random.default_rng(0).bytes(4096),
            "empty": b"",
            "another model": another_models_export(tmp_path) if damage == "another model" else b"",
        }[damage]
    )
    with caplog.at_level("WARNING"):
        predictor = load(str(tiny_model), detector="haar", backend="onnx")
    faces = predictor.predict(synthetic_face(0, 24), detect=False)
    assert len(faces) == 1 and len(faces[0].probabilities) == 3
    assert export.with_name(export.name + ".damaged").is_file() and str(export) in caplog.text
    assert predictor.engine.backend.name == "onnx" and export.stat().st_size > 0


def test_a_cached_export_is_checked_against_its_record(tiny_model: Path) -> None:
    from ferlab.inference.engine import DamagedExport, OnnxBackend

    export = cached_export(tiny_model)
    record = json.loads(export.with_suffix(".json").read_text())
    assert record["files"]["onnx"] == export.name and len(record["checksums"]["onnx"]) == 64
    export.write_bytes(export.read_bytes()[:-1] + b"\x00")  # same size, one byte changed
    with pytest.raises(DamagedExport, match="sha256") as error:
        OnnxBackend(export)
    assert str(export) in str(error.value) and "\n" not in str(error.value)


# -- 3. a full disk ------------------------------------------------------------------------------


def torch_full_disk(*_args: object, **_kwargs: object) -> None:
    """What torch.save raises when the disk fills: a RuntimeError, not an OSError."""
    raise RuntimeError(
        "[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file data/3: "
        "file write failed\nException raised from write_record at ../caffe2/serialize/inline_container.cc"
    )


def test_a_full_disk_during_training_is_one_line_and_the_run_resumes(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ferlab.models.bundle as bundle_module

    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"path": str(blob_data)},
                "model": {"name": "baseline_cnn", "params": {"input_size": 24}},
                "train": {"epochs": 2, "batch_size": 16},
            }
        )
    )
    real_save, saves = torch.save, []

    def full_on_the_third(obj: object, handle: object) -> None:
        saves.append(1)
        if len(saves) >= 3:  # epoch 1 wrote best.pt and last.pt; epoch 2's first write fails
            handle.write(b"half")  # type: ignore[attr-defined]
            torch_full_disk()
        real_save(obj, handle)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle_module.torch, "save", full_on_the_third)
    cli_error(invoke("train", config, "--runs-dir", tmp_path / "runs"), tmp_path / "runs" / "exp", "full disk")
    assert list((tmp_path / "runs" / "exp").glob("*.tmp")) == []
    monkeypatch.setattr(bundle_module.torch, "save", real_save)
    result = invoke("train", "--resume", tmp_path / "runs" / "exp")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "exp" / "model.pt").is_file()


def test_export_on_a_full_disk_names_the_file_not_the_onnx_package(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(torch.onnx, "export", no_space)
    onnx = tmp_path / "out" / "m.onnx"
    line = cli_error(invoke("export", tiny_model, "--out", onnx), NO_SPACE, onnx)
    assert "onnx package" not in line
    assert list((tmp_path / "out").iterdir()) == []


def test_an_interrupted_export_leaves_no_temporary_file(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", interrupted)
    result = invoke("export", tiny_model, "--out", tmp_path / "out" / "m.onnx")
    assert result.exit_code == 130, result.output
    assert list((tmp_path / "out").iterdir()) == []


def test_predict_on_a_full_disk_leaves_no_half_table(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = write_image(tmp_path / "a.png", synthetic_face(0))
    real = Path.write_text

    def full(self: Path, text: str, *args: object, **kwargs: object) -> int:
        if self.suffix == ".tmp":  # the table's temporary file: half of it lands, then the disk is full
            real(self, text[: len(text) // 2], *args, **kwargs)  # type: ignore[arg-type]
            raise OSError(errno.ENOSPC, NO_SPACE)
        return real(self, text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "rows.csv"
    cli_error(invoke("predict", photo, "--model", tiny_model, "--no-detect", "--out", out), out, NO_SPACE)
    assert list(tmp_path.glob("*.tmp")) == [] and not out.exists()


# -- 4. stalled and idle connections, dropped clients --------------------------------------------


def serve_in_thread(api: object, port: int, header_timeout: float) -> tuple[object, threading.Thread]:
    import uvicorn

    from ferlab.apps.api import GuardedH11Protocol

    class Quick(GuardedH11Protocol):
        pass

    Quick.header_timeout = header_timeout
    config = uvicorn.Config(api, host="127.0.0.1", port=port, http=Quick, timeout_keep_alive=1, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, thread


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(1024):
            pass
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        return True
    return True


def test_connections_that_stall_before_their_headers_or_idle_are_closed() -> None:
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    port = free_port()
    server, thread = serve_in_thread(api, port, header_timeout=1.0)
    try:
        silent = socket.create_connection(("127.0.0.1", port))
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in kept.recv(4096)
        kept.sendall(b"GET /pi")  # a second request that never finishes its headers
        for sock in (silent, half, kept):
            assert closed_within(sock, 4.0)
        answer = socket.create_connection(("127.0.0.1", port))  # and normal requests are still served
        answer.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer.settimeout(5)
        received = b""
        while chunk := answer.recv(4096):
            received += chunk
        assert received.endswith(b'{"ok":"yes"}')
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(10)


def test_serve_runs_uvicorn_with_the_header_and_keep_alive_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from ferlab.apps.api import GuardedH11Protocol, run_server

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    run_server(object(), "127.0.0.1", 8000)  # type: ignore[arg-type]
    assert seen["http"] is GuardedH11Protocol and seen["timeout_keep_alive"] <= 10


def test_a_client_that_drops_mid_upload_is_one_log_line(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ferlab.apps.api import create_app
    from ferlab.inference.predictor import load

    api = create_app(load(str(tiny_model), detector="haar", backend="torch"))
    boundary = "b0und"
    head = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\x89PNG"
        + b"\0" * 1000
    )
    messages = [{"type": "http.request", "body": head, "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = predict_upload_scope(f"multipart/form-data; boundary={boundary}".encode(), ("127.0.0.1", 5555))
    with caplog.at_level("INFO"):
        asyncio.run(api(scope, receive, send))
    assert sent[0]["status"] < 500
    assert "Traceback" not in caplog.text and "ClientDisconnect" not in caplog.text
    dropped = [r for r in caplog.records if "dropped the connection" in r.getMessage()]
    assert len(dropped) == 1 and "127.0.0.1:5555" in dropped[0].getMessage() and dropped[0].exc_info is None


# -- 5. memory after large images ----------------------------------------------------------------


def test_large_decodes_hand_memory_back(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from PIL import Image

    from ferlab.apps import api
    from ferlab.inference.predictor import load

    trims: list[int] = []
    monkeypatch.setattr(api, "release_memory", lambda: trims.append(1))
    predictor = load(str(tiny_model), detector="haar", backend="torch")
    buffer = io.BytesIO()
    Image.new("RGB", (2500, 2000), (120, 120, 120)).save(buffer, "JPEG")
    (height, width), _faces = api.decode_and_predict(predictor, buffer.getvalue(), detect=False)
    assert (width, height) == (2500, 2000) and trims == [1]
    small = io.BytesIO()
    Image.new("RGB", (64, 64)).save(small, "PNG")
    api.decode_and_predict(predictor, small.getvalue(), detect=False)
    assert trims == [1]  # small images cost nothing extra


# -- 6. smaller items ------------------------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_in_a_second(tmp_path: Path) -> None:
    from ferlab.training.config import load_config

    lines, previous = ["a: &a [x, x, x, x, x, x, x, x, x]"], "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    lines.append("train: {lr: *i}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(FerlabError, match="expands to over") as error:
        load_config(path)
    assert time.perf_counter() - started < 2 and str(path) in str(error.value)
    inline = "{a: &a [x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"{name}: &{name} [" + ", ".join([f"*{before}"] * 9) + "]" for before, name in zip("abcdefgh", "bcdefghi")
    )
    plain = tmp_path / "plain.yaml"
    plain.write_text("{}\n")
    with pytest.raises(FerlabError, match="expands to over"):  # the same bomb in a --set value
        load_config(plain, [f"model.params={inline}}}"])


def test_shown_config_values_are_bounded() -> None:
    """An error message renders a few items of a value, never all of it (an alias bomb's repr
    took 32 s and 1.8 GB); counted, so that the check is cheap on any code."""
    from ferlab.training.config import _shown

    rendered: list[int] = []

    class Item:
        def __repr__(self) -> str:
            rendered.append(1)
            return "item"

    text = _shown([[Item()] * 100] * 100)
    assert len(text) <= 80 and len(rendered) <= 50


def test_predict_refuses_an_unwritable_out_before_classifying_anything(tiny_model: Path, tmp_path: Path) -> None:
    photo = write_image(tmp_path / "a.png", synthetic_face(0))
    result = invoke("predict", photo, "--model", tiny_model, "--no-detect", "--out", "/proc/ferlab-test/out.csv")
    cli_error(result, "--out", "/proc", "cannot be written")
    assert "face 1" not in result.output  # nothing was classified first


def test_predict_reports_a_dangling_symlink_inside_a_folder(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_image(folder / "a.png", synthetic_face(0))
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    out = tmp_path / "rows.csv"
    result = invoke("predict", folder, "--model", tiny_model, "--no-detect", "--out", out)
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        rows = {Path(row["file"]).name: row["reason"] for row in csv.DictReader(handle)}
    assert rows["gone.png"].startswith("not read")


def test_a_cache_that_cannot_be_written_says_it_is_the_cache(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERLAB_CACHE_DIR", "/proc/ferlab-cache")  # not writable, even for root
    photo = write_image(tmp_path / "a.png", synthetic_face(0))
    result = invoke("predict", photo, "--model", tiny_model, "--no-detect", "--backend", "onnx")
    cli_error(result, "/proc/ferlab-cache", "cache", "FERLAB_CACHE_DIR")


def test_a_plain_pickle_model_is_one_line_without_torch_warnings(tmp_path: Path) -> None:
    import pickle

    model = tmp_path / "plain.pt"
    model.write_bytes(pickle.dumps({"format": "x", "weights": [1, 2, 3]}))
    result = invoke("predict", model, "--model", model, "--no-detect")
    cli_error(result, model, "pickle")
    assert "UserWarning" not in result.output and "protocol" not in result.output


def test_a_pickled_pretrained_file_does_not_advise_weights_only_false(tmp_path: Path) -> None:
    import pickle

    from ferlab.models.pretrained import read_state_dict

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(os.system))
    with pytest.raises(FerlabError) as error:
        read_state_dict(evil)
    assert "weights_only" not in str(error.value) and str(evil) in str(error.value)


def test_a_run_name_with_an_emoji_is_accepted(blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ferlab

    named: list[str] = []

    def fake_train(config: object, runs_dir: Path, device: object = None) -> tuple[Path, dict]:
        named.append(config.name)  # type: ignore[attr-defined]
        raise FerlabError("stop here")

    monkeypatch.setattr(ferlab, "train", fake_train)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(blob_data)}}))
    result = invoke("train", config, "--name", "run-😀", "--runs-dir", tmp_path)
    assert named == ["run-😀"], result.output


def test_onnx_sessions_do_not_keep_their_peak_memory(tiny_model: Path) -> None:
    """ONNX Runtime's CPU arena keeps the largest batch's memory for good (a photo of 25 faces
    pinned about 200 MB per worker); without it, memory goes back after the batch."""
    from ferlab.inference.engine import OnnxBackend

    backend = OnnxBackend(cached_export(tiny_model))
    assert backend.session.get_session_options().enable_cpu_mem_arena is False
