"""The REST API with FastAPI's TestClient: results, every kind of bad request, limits and concurrency."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import GRACE_HOPPER, blob_image
from ferlab.apps.api import create_app
from ferlab.inference.predictor import Predictor
from ferlab.models.bundle import load_bundle


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def predictor(blob_model: Path) -> Predictor:
    return Predictor(load_bundle(blob_model), detector="haar", backend="torch")


@pytest.fixture(scope="module")
def client(predictor: Predictor, blob_model: Path) -> Iterator[TestClient]:
    with TestClient(create_app(predictor, reference=blob_model)) as client:
        yield client


def upload(client: TestClient, content: bytes, name: str = "face.jpg", mime: str = "image/jpeg", **kwargs: object):
    return client.post("/v1/predict", files={"file": (name, content, mime)}, **kwargs)  # type: ignore[arg-type]


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["detail"], body


def test_an_uploaded_photo_gives_one_face_with_sorted_calibrated_probabilities(client: TestClient) -> None:
    response = upload(client, GRACE_HOPPER.read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "blobs" and body["image"] == {"width": 512, "height": 600} and body["reason"] is None
    [face] = body["faces"]
    probabilities = list(face["probabilities"].values())
    assert set(face["probabilities"]) == {"angry", "happy", "sad"}
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-5)
    assert face["label"] == next(iter(face["probabilities"])) and face["confidence"] == probabilities[0]
    assert isinstance(face["uncertain"], bool) and 150 < face["box"][2] < 320 and face["detector_score"] is not None


def test_a_phone_photo_on_its_side_is_answered_upright(client: TestClient) -> None:
    upright = Image.open(GRACE_HOPPER)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to display
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", exif=exif)
    body = upload(client, buffer.getvalue()).json()
    assert body["image"] == {"width": 512, "height": 600}  # the stored pixels are 600 wide, 512 high
    [face] = body["faces"]
    assert face["box"][0] + face["box"][2] <= 512


@pytest.mark.parametrize("where", ["query", "form"])
def test_detect_false_classifies_the_whole_image_as_one_face(client: TestClient, where: str) -> None:
    data = png(blob_image(1, np.random.default_rng(5)))
    if where == "query":
        response = upload(client, data, "blob.png", "image/png", params={"detect": "false"})
    else:
        response = upload(client, data, "blob.png", "image/png", data={"detect": "false"})
    assert response.status_code == 200, response.text
    [face] = response.json()["faces"]
    assert face["box"] == [0, 0, 48, 48] and face["detector_score"] is None and face["label"] == "happy"


def test_base64_json_gives_the_same_answer_as_a_multipart_upload(client: TestClient) -> None:
    data = GRACE_HOPPER.read_bytes()
    from_json = client.post("/v1/predict", json={"image": base64.b64encode(data).decode()})
    assert from_json.status_code == 200, from_json.text
    assert from_json.json()["faces"] == upload(client, data).json()["faces"]
    blob = png(blob_image(2, np.random.default_rng(1)))
    data_url = "data:image/png;base64," + base64.b64encode(blob).decode()
    [face] = client.post("/v1/predict", json={"image": data_url, "detect": False}).json()["faces"]
    assert face["box"] == [0, 0, 48, 48]


def test_an_image_without_a_face_returns_no_faces_and_a_reason(client: TestClient) -> None:
    response = upload(client, png(np.full((240, 320), 128, np.uint8)), "gray.png", "image/png")
    assert response.status_code == 200
    assert response.json()["faces"] == [] and "no face found" in response.json()["reason"]


def test_corrupt_empty_and_truncated_files_are_400s(client: TestClient) -> None:
    assert_error(upload(client, b"this is not a jpeg"), 400, "not_an_image")
    assert_error(upload(client, b""), 400, "empty_file")
    assert_error(upload(client, GRACE_HOPPER.read_bytes()[:3000]), 400, "not_an_image")


def test_wrong_content_types_and_malformed_bodies_are_4xx_with_json(client: TestClient) -> None:
    def raw(body: bytes, content_type: str):
        return client.post("/v1/predict", content=body, headers={"content-type": content_type})

    assert_error(raw(b"hello", "text/plain"), 415, "unsupported_media_type")
    assert_error(client.post("/v1/predict"), 415, "unsupported_media_type")
    assert_error(upload(client, b"hello", "notes.txt", "text/plain"), 415, "unsupported_media_type")
    other_field = client.post("/v1/predict", data={"detect": "true"}, files={"other": ("a.jpg", b"x", "image/jpeg")})
    assert_error(other_field, 422, "missing_file")
    assert_error(client.post("/v1/predict", json={"detect": True}), 422, "missing_image")
    assert_error(client.post("/v1/predict", json=["image"]), 422, "missing_image")
    assert_error(client.post("/v1/predict", json={"image": "not base64!"}), 400, "bad_base64")
    assert_error(raw(b"{nope", "application/json"), 400, "bad_json")
    assert_error(raw(b"--x\r\n", "multipart/form-data"), 400, "bad_multipart")
    assert_error(upload(client, GRACE_HOPPER.read_bytes(), params={"detect": "maybe"}), 422, "invalid_detect")
    assert_error(client.get("/v1/predict"), 405, "http_error")
    assert_error(client.get("/nowhere"), 404, "http_error")


def test_upload_and_pixel_limits_are_enforced(predictor: Predictor) -> None:
    photo = GRACE_HOPPER.read_bytes()
    with TestClient(create_app(predictor, max_upload_bytes=20_000, max_pixels=100_000)) as small:
        assert_error(upload(small, photo), 413, "payload_too_large")  # Content-Length: refused before reading
        chunks = iter([photo[i : i + 4096] for i in range(0, len(photo), 4096)])
        streamed = small.post("/v1/predict", content=chunks, headers={"content-type": "application/json"})
        assert "content-length" not in streamed.request.headers  # chunked: cut off while streaming
        assert_error(streamed, 413, "payload_too_large")
        big = png(np.full((400, 400), 128, np.uint8))  # 160,000 pixels in a ~1 kB file
        assert len(big) < 20_000
        assert_error(upload(small, big, "big.png", "image/png"), 413, "image_too_large")
        assert upload(small, png(blob_image(0, np.random.default_rng(0))), "b.png", "image/png").status_code == 200


def test_concurrent_requests_all_succeed_with_consistent_results(client: TestClient) -> None:
    photo = GRACE_HOPPER.read_bytes()
    blob = png(blob_image(0, np.random.default_rng(2)))
    expected = {"photo": upload(client, photo).json(), "blob": upload(client, blob, params={"detect": "false"}).json()}

    def request(i: int) -> tuple[str, int, dict]:
        kind = "photo" if i % 2 else "blob"
        response = upload(client, photo) if kind == "photo" else upload(client, blob, params={"detect": "false"})
        return kind, response.status_code, response.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(request, range(24)))
    assert [status for _, status, _ in results] == [200] * 24
    assert all(body == expected[kind] for kind, _, body in results)


def test_health_models_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "model": "blobs"}
    [model] = client.get("/v1/models").json()["models"]
    assert model["name"] == "blobs" and model["classes"] == ["angry", "happy", "sad"]
    assert 0 <= model["test"]["accuracy"] <= 1 and model["architecture"] == "baseline_cnn"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(schema) == {"multipart/form-data", "application/json"}


def test_openapi_declares_every_answer_with_its_schema_and_examples(client: TestClient) -> None:
    """/docs shows what each answer holds: the 200 bodies are typed, and the errors a client must
    handle (400, 408, 413, 415, 503) are listed with the one error body and an example each."""
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    def schema_of(response: dict) -> dict:
        reference = response["content"]["application/json"]["schema"]["$ref"]
        return schemas[reference.rsplit("/", 1)[1]]

    predict = document["paths"]["/v1/predict"]["post"]["responses"]
    faces = schema_of(predict["200"])["properties"]["faces"]["items"]["$ref"].rsplit("/", 1)[1]
    assert {"box", "label", "confidence", "probabilities", "uncertain"} <= set(schemas[faces]["properties"])
    for status in ("400", "408", "413", "415", "503"):
        assert set(schema_of(predict[status])["properties"]) == {"error", "detail"}, status
        examples = predict[status]["content"]["application/json"]["examples"]
        assert examples and all(set(e["value"]) == {"error", "detail"} for e in examples.values()), status
    assert {"status", "model"} <= set(schema_of(document["paths"]["/healthz"]["get"]["responses"]["200"])["properties"])
    models = schema_of(document["paths"]["/v1/models"]["get"]["responses"]["200"])
    assert "models" in models["properties"]
    [model] = client.get("/v1/models").json()["models"]  # the response model keeps every field of the summary
    assert {"architecture", "input", "temperature", "card"} <= set(model)


def test_serve_binds_localhost_with_the_chosen_model_and_limit(
    blob_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    import uvicorn
    from typer.testing import CliRunner

    from ferlab.cli.serve import serve

    started: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(app=app, **options))
    command = typer.Typer()
    command.command()(serve)
    result = CliRunner().invoke(command, ["--model", str(blob_model), "--max-upload-mb", "1", "--detector", "haar"])
    assert result.exit_code == 0, result.output
    assert (started["host"], started["port"]) == ("127.0.0.1", 8000)
    with TestClient(started["app"]) as client:
        assert client.get("/healthz").json()["model"] == "blobs"
        assert_error(upload(client, b"x" * (1024 * 1024 + 1)), 413, "payload_too_large")
    result = CliRunner().invoke(command, ["--model", str(blob_model / "missing.pt")])
    assert result.exit_code == 2 and "no model" in result.output


def test_a_full_pool_answers_503_with_retry_after_instead_of_queueing_forever(predictor: Predictor) -> None:
    """One worker busy for 1 s, one queue place: the queued request gives up after the queue
    timeout and the one beyond the queue is refused at once; both say when to retry."""
    import time

    import anyio

    from ferlab.apps.api import ApiError, WorkerPool

    def hold(_predictor: Predictor, seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    outcomes: dict[str, tuple[str, float]] = {}

    async def request(name: str, seconds: float, pool: WorkerPool, start: float) -> None:
        try:
            outcomes[name] = (await pool.run(hold, seconds), anyio.current_time() - start)
        except ApiError as exc:
            assert exc.status == 503 and exc.headers and int(exc.headers["Retry-After"]) >= 1
            outcomes[name] = ("503", anyio.current_time() - start)

    async def main() -> None:
        pool = WorkerPool([predictor], max_waiting=1, queue_timeout=0.4)
        start = anyio.current_time()
        async with anyio.create_task_group() as group:
            group.start_soon(request, "first", 1.0, pool, start)
            await anyio.sleep(0.05)
            group.start_soon(request, "queued", 0.0, pool, start)
            await anyio.sleep(0.05)
            group.start_soon(request, "refused", 0.0, pool, start)
        assert pool.waiting == 0

    anyio.run(main)
    assert outcomes["first"][0] == "done"
    assert outcomes["queued"][0] == "503" and 0.4 <= outcomes["queued"][1] < 0.9
    assert outcomes["refused"][0] == "503" and outcomes["refused"][1] < 0.3


def test_workers_each_get_their_own_predictor(blob_model: Path) -> None:
    app = create_app(blob_model, workers=2, detector="haar", backend="torch")
    with TestClient(app) as client, ThreadPoolExecutor(4) as threads:
        responses = list(threads.map(lambda _: upload(client, GRACE_HOPPER.read_bytes()), range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    assert len({r.json()["faces"][0]["label"] for r in responses}) == 1
