"""The REST API: `POST /v1/predict` and friends, a thin FastAPI layer over one `Predictor`.

Everything here adapts HTTP to the predictor and back; it also guards the server: bodies
are read as a stream, cut off at the size limit and at a read timeout, image dimensions are
checked from the header before decoding (25 megapixels by default), JSON nested past the
parser's limit is a 400, and every bad request gets a 4xx JSON error. Prediction runs in a
pool of workers, each a thread with its own predictor (one single-threaded ONNX Runtime
session and detector each), so the event loop keeps answering; a bounded queue in front of
it answers 503 with Retry-After when the server is full, instead of letting every client wait.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import io
import json
import logging
import math
import sys
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import h11
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from ferlab.data.imageio import MAX_PIXELS, as_rgb
from ferlab.errors import FerlabError
from ferlab.inference.catalog import model_summary
from ferlab.inference.cpus import usable_cpus
from ferlab.inference.predictor import Faces, Predictor, load
from ferlab.models.shipped import default_model

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
API_MAX_PIXELS = 25_000_000
"""The API's default pixel cap: decoding costs about 10 bytes a pixel, so a request costs at most ~0.25 GB."""
BODY_IDLE_TIMEOUT_S = 10.0
"""Longest wait for the next piece of a request body."""
BODY_TIMEOUT_S = 60.0
"""Longest time to receive a whole request body (10 MB at 1.4 Mbit/s)."""
QUEUE_PER_WORKER = 12
"""Requests allowed to wait for a worker, per worker, before the server answers 503."""
QUEUE_TIMEOUT_S = 4.0
"""Longest wait for a worker; a request still queued then gets a 503 (no client waits past ~5 s)."""
HEADER_TIMEOUT_S = 5.0
"""Longest time a connection may take to send a request's line and headers (from its opening,
or from its first byte after a response): a client that sends nothing, or headers a byte at a
time, is closed then instead of holding a socket for good."""
KEEP_ALIVE_S = 5
"""An idle keep-alive connection is closed this many seconds after its last response."""
TRIM_ABOVE_PIXELS = 4_000_000
"""After decoding an image this large, freed memory is handed back to the OS (`release_memory`)."""
TRIM_ABOVE_BYTES = 1_000_000
"""After a request body this large, freed memory is handed back to the OS once it is answered."""

logger = logging.getLogger("ferlab.api")


class ApiError(Exception):
    """A bad request: its status, a stable machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: a stable code for programs and one line for people."""

    error: str = Field(description="A stable, machine-readable code, e.g. `payload_too_large`.")
    detail: str = Field(description="One line that says what was wrong and what to send instead.")


class FaceResult(BaseModel):
    box: list[int] = Field(
        description="x, y, width, height in pixels of the upright image.", min_length=4, max_length=4
    )
    detector_score: float | None = Field(description="The detector's confidence; null when detection was off.")
    label: str = Field(description="The most probable expression.")
    confidence: float = Field(description="Its calibrated probability.")
    uncertain: bool = Field(description="True when the confidence is below 0.5: read the other probabilities too.")
    probabilities: dict[str, float] = Field(description="Every class with its calibrated probability, highest first.")
    landmarks: list[list[float]] | None = Field(
        description="Five [x, y] points: right eye, left eye, nose tip, right and left mouth corner; null if unknown."
    )


class ImageSize(BaseModel):
    width: int
    height: int


class Prediction(BaseModel):
    model: str = Field(description="The model that answered.")
    image: ImageSize = Field(description="The image as classified: upright, EXIF orientation applied.")
    faces: list[FaceResult] = Field(description="Largest face first; empty when none was found.")
    reason: str | None = Field(description="Why `faces` is empty; null otherwise.")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    model: str


class ModelCard(BaseModel):
    """What a user should know before trusting the model (ferlab.inference.catalog.model_summary)."""

    model_config = ConfigDict(extra="allow")

    name: str
    classes: list[str]
    training_data: str | None = Field(None, description="The dataset's name, e.g. FER+.")
    test: dict[str, Any] | None = Field(None, description="Test-set figures: accuracy, macro_f1.")
    card: str | None = Field(None, description="The model card in Markdown, where there is one.")


class Models(BaseModel):
    models: list[ModelCard]


def _error_responses(*examples: tuple[int, str, str, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of an operation: (status, description, code, detail)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status, description, code, detail in examples:
        entry = responses.setdefault(
            status, {"model": ErrorBody, "description": description, "content": {"application/json": {"examples": {}}}}
        )
        entry["content"]["application/json"]["examples"][code] = {"value": {"error": code, "detail": detail}}
    return responses


PREDICT_ERRORS = _error_responses(
    (
        400,
        "The body or the image cannot be read.",
        "not_an_image",
        "the file is not a readable JPEG, PNG or WebP image",
    ),
    (400, "The body or the image cannot be read.", "bad_json", "the body is not valid JSON (Expecting value)"),
    (408, "The body did not arrive in time.", "request_timeout", "the request body did not arrive in time"),
    (413, "The body or the image is too large.", "payload_too_large", "the request body is over the limit"),
    (
        413,
        "The body or the image is too large.",
        "image_too_large",
        "the image is 8000x6000; the limit is 25,000,000 pixels",
    ),
    (415, "Neither multipart nor JSON, or not an image.", "unsupported_media_type", "send multipart/form-data or JSON"),
    (
        422,
        "The image is missing or `detect` is not a boolean.",
        "missing_file",
        "send the image as a file named 'file'",
    ),
    (
        503,
        "Every worker is busy; retry after Retry-After seconds.",
        "server_busy",
        "all 2 workers are busy; retry in 2 s",
    ),
    (500, "The server failed; its log says why.", "internal_error", "the server failed on this request (ValueError)"),
)
SERVER_ERRORS = _error_responses(
    (500, "The server failed; its log says why.", "internal_error", "the server failed on this request (ValueError)")
)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": message}, status_code=status, headers=headers)


class WorkerPool:
    """Predictors that each serve one request at a time on their own thread, behind a bounded queue.

    One predictor per worker means one ONNX Runtime session and one detector per thread, so
    workers never wait on each other's locks, and each session runs one intra-op thread (two
    threads per call collapse under load). A request beyond `max_waiting` queued ones, or one
    that waits over `queue_timeout` seconds, is refused with a 503 and Retry-After.
    """

    def __init__(self, predictors: list[Predictor], max_waiting: int, queue_timeout: float = QUEUE_TIMEOUT_S) -> None:
        if not predictors:
            raise FerlabError("the worker pool needs at least one predictor")
        self._free = list(predictors)
        self._slots = anyio.Semaphore(len(predictors))
        self._threads = anyio.CapacityLimiter(len(predictors))
        self.workers = len(predictors)
        self.max_waiting = max_waiting
        self.queue_timeout = queue_timeout
        self.waiting = 0

    def busy(self) -> ApiError:
        retry = max(1, math.ceil(self.queue_timeout / 2))
        return ApiError(
            503,
            "server_busy",
            f"all {self.workers} workers are busy and {self.waiting} requests are waiting; retry in {retry} s",
            {"Retry-After": str(retry)},
        )

    def check_room(self) -> None:
        """Refuse early, before a body is read, when the queue is already full."""
        if self._slots.value == 0 and self.waiting >= self.max_waiting:
            raise self.busy()

    @asynccontextmanager
    async def _predictor(self) -> AsyncIterator[Predictor]:
        self.check_room()
        self.waiting += 1
        try:
            with anyio.move_on_after(self.queue_timeout) as waited:
                await self._slots.acquire()
        finally:
            self.waiting -= 1
        if waited.cancelled_caught:
            raise self.busy()
        predictor = self._free.pop()
        try:
            yield predictor
        finally:
            self._free.append(predictor)
            self._slots.release()

    async def run(self, work: Callable[..., Any], *args: Any) -> Any:
        """`work(predictor, *args)` on a free worker's thread."""
        async with self._predictor() as predictor:
            return await anyio.to_thread.run_sync(work, predictor, *args, limiter=self._threads)


async def limited_stream(
    request: Request,
    limit: int,
    idle_timeout: float = BODY_IDLE_TIMEOUT_S,
    timeout: float = BODY_TIMEOUT_S,
) -> AsyncGenerator[bytes, None]:
    """The request body chunk by chunk, failing as soon as it passes `limit` bytes.

    A Content-Length above the limit is refused before a byte is read; a chunked or lying
    body is cut off while streaming, so no more than `limit` bytes are ever buffered. A body
    that stalls for `idle_timeout` seconds, or takes over `timeout` in all, gets a 408, which
    frees the connection.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(
                413, "payload_too_large", f"the request body is {int(declared):,} bytes; the limit is {limit:,}"
            )
    received = 0
    deadline = anyio.current_time() + timeout
    chunks = request.stream().__aiter__()
    while True:
        wait = min(idle_timeout, deadline - anyio.current_time())
        with anyio.move_on_after(max(0.0, wait)) as waiting:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except ClientDisconnect:  # nobody is left to answer: one log line, not a traceback
                client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
                logger.warning(
                    "%s dropped the connection after sending %s bytes of its upload", client, f"{received:,}"
                )
                raise ApiError(400, "client_disconnected", "the client closed the connection mid-upload") from None
        if waiting.cancelled_caught:
            raise ApiError(
                408,
                "request_timeout",
                f"the request body did not arrive in time ({received:,} bytes "
                f"received; at most {idle_timeout:g} s between pieces, "
                f"{timeout:g} s in all)",
            )
        received += len(chunk)
        if received > limit:
            raise ApiError(413, "payload_too_large", f"the request body is over the {limit:,}-byte limit")
        yield chunk


def parse_detect(value: Any) -> bool:
    """`detect` from a query string, form field or JSON: a bool or true/false/1/0/yes/no."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    shown = (
        repr(value) if isinstance(value, (str, int, float)) and len(repr(value)) <= 40 else f"a {type(value).__name__}"
    )
    raise ApiError(422, "invalid_detect", f"detect must be true or false, not {shown}")


async def read_multipart(request: Request, limit: int, **timeouts: float) -> tuple[bytes, Any]:
    """The `file` part's bytes and the optional `detect` form field of a multipart upload."""
    parser = MultiPartParser(request.headers, limited_stream(request, limit, **timeouts), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "missing_file", "send the image as a multipart file field named 'file'")
        declared = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
        if (
            not declared.startswith("image/") and declared != "application/octet-stream"
        ):  # the decoder has the last word
            raise ApiError(
                415, "unsupported_media_type", f"the file is declared as {declared}; send a JPEG, PNG or WebP image"
            )
        return await upload.read(), form.get("detect")
    finally:
        await form.close()


async def read_json(request: Request, limit: int, **timeouts: float) -> tuple[bytes, Any]:
    """The decoded `image` and the optional `detect` of a JSON body {"image": "<base64>"}."""
    body = b"".join([chunk async for chunk in limited_stream(request, limit, **timeouts)])
    try:
        payload = json.loads(body)
    except RecursionError:  # the parser's nesting limit (about 1,000 levels); a valid body is a flat object
        raise ApiError(400, "bad_json", "the JSON body is nested too deeply; send a flat object") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, "bad_json", f"the body is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
        raise ApiError(422, "missing_image", 'send JSON like {"image": "<base64 of a JPEG, PNG or WebP file>"}')
    encoded = payload["image"]
    if encoded.startswith("data:"):  # a data URL, as a browser's FileReader makes
        encoded = encoded.partition(",")[2]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_base64", "the image field is not valid base64") from None
    return data, payload.get("detect")


def check_image_size(data: bytes, max_pixels: int) -> None:
    """Refuse non-images and images over `max_pixels` from the file header, before decoding."""
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the cap below decides
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own cap, far above ours: too large, not unreadable
        raise ApiError(
            413,
            "image_too_large",
            f"the image is over Pillow's decompression-bomb limit; the limit is {max_pixels:,} pixels",
        ) from None
    except Exception:  # noqa: BLE001 - Pillow's format plugins raise many types on hostile headers
        raise ApiError(400, "not_an_image", "the file is not a readable JPEG, PNG or WebP image") from None
    if width * height > max_pixels:
        raise ApiError(413, "image_too_large", f"the image is {width}x{height}; the limit is {max_pixels:,} pixels")


def decode_and_predict(predictor: Predictor, data: bytes, detect: bool) -> tuple[tuple[int, int], Faces]:
    """The upright image's (height, width) (EXIF orientation applied, as the boxes are) and its
    faces. Only a file that cannot be decoded is the client's fault (400); any other failure is
    the server's (500). After a large image the freed memory goes back to the OS."""
    try:
        rgb = as_rgb(data)
    except FerlabError as exc:  # truncated or otherwise undecodable despite a valid header
        raise ApiError(400, "not_an_image", str(exc)) from None
    try:
        return (rgb.shape[0], rgb.shape[1]), predictor.predict(rgb, detect=detect)
    finally:
        if rgb.shape[0] * rgb.shape[1] > TRIM_ABOVE_PIXELS:
            del rgb
            release_memory()


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None
    return trim


_TRIM = _malloc_trim()
_trim_pending = False


def release_memory_soon(delay: float = 1.0) -> None:
    """`release_memory` on the event loop `delay` seconds from now, when the request that asks
    has been answered and its buffers freed; one pending call serves a whole burst."""
    global _trim_pending
    if _trim_pending:
        return
    _trim_pending = True

    def trim() -> None:
        global _trim_pending
        _trim_pending = False
        release_memory()

    asyncio.get_running_loop().call_later(delay, trim)


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc's malloc_trim): glibc may keep the blocks a
    25 MP decode freed in its per-thread arenas. (The larger share that stayed after bursts was
    ONNX Runtime's CPU arena, which `OnnxBackend` turns off.)"""
    if _TRIM is not None:
        _TRIM(0)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers (`header_timeout` seconds).

    uvicorn times out idle keep-alive connections only after a response, and not at all a
    connection that never completes its headers (nothing sent, or a byte at a time): each holds
    a socket until the open-file limit is reached. Here the clock starts when a connection opens
    and when a new request's first byte arrives, and stops when its headers are complete."""

    header_timeout: float = HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_clock()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._start_header_clock()  # a request has begun and its headers are not complete yet
        else:
            self._stop_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def _start_header_clock(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if self.conn.their_state is h11.IDLE and not busy and not self.transport.is_closing():
            self.transport.close()


def run_server(api: FastAPI, host: str, port: int) -> None:
    """Serve `api` with uvicorn, closing connections that stall before their headers are complete
    (`GuardedH11Protocol`) and idle keep-alive ones (`KEEP_ALIVE_S`)."""
    import uvicorn

    uvicorn.run(api, host=host, port=port, log_level="info", http=GuardedH11Protocol, timeout_keep_alive=KEEP_ALIVE_S)


def create_app(
    predictor_or_model: Predictor | str | Path | None = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = API_MAX_PIXELS,
    workers: int | None = None,
    max_waiting: int | None = None,
    queue_timeout: float = QUEUE_TIMEOUT_S,
    reference: str | Path | None = None,
    body_idle_timeout: float = BODY_IDLE_TIMEOUT_S,
    body_timeout: float = BODY_TIMEOUT_S,
    preload_detector: bool = False,
    **predictor_options: Any,
) -> FastAPI:
    """The API around a model reference (default: $FERLAB_MODEL or the shipped default) or a loaded `Predictor`.

    `workers` predictors (default: the CPU count) are loaded with `predictor_options`; each
    classifies one image at a time, which bounds memory. Up to `max_waiting` further requests
    (default: 12 per worker) wait at most `queue_timeout` seconds for one; beyond that the API
    answers 503 with Retry-After. A loaded `Predictor` serves alone, as one worker; `reference`
    says where its model came from, for its card. `preload_detector` loads the detectors now, so
    that a bad detector name fails at start rather than on the first request.
    """
    if max_upload_bytes < 1 or max_pixels < 1 or body_idle_timeout <= 0 or body_timeout <= 0:
        raise FerlabError("the upload and pixel limits and the body timeouts must be positive")
    if max_pixels > MAX_PIXELS:
        raise FerlabError(f"the pixel limit can be at most {MAX_PIXELS:,} (the decoder's own limit)")
    if (workers is not None and workers < 1) or (max_waiting is not None and max_waiting < 0) or queue_timeout <= 0:
        raise FerlabError("workers must be at least 1, max_waiting at least 0 and queue_timeout positive")
    if isinstance(predictor_or_model, Predictor):
        predictors = [predictor_or_model]
    else:
        reference = predictor_or_model or default_model()
        predictors = [load(reference, **predictor_options) for _ in range(workers or usable_cpus())]
    if preload_detector:
        for predictor in predictors:
            _ = predictor.detector
    pool = WorkerPool(
        predictors, QUEUE_PER_WORKER * len(predictors) if max_waiting is None else max_waiting, queue_timeout
    )
    model_info = model_summary(predictors[0].record, reference, [m.record for m in predictors[0].members])
    timeouts = {"idle_timeout": body_idle_timeout, "timeout": body_timeout}

    app = FastAPIOffline(  # /docs and /redoc with bundled assets: they work without internet
        title="ferlab",
        summary="Facial expression recognition: faces in a photo and the emotion each one shows.",
        version="1",
    )

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"the server failed on this request ({type(exc).__name__}); see its log")

    @app.get(
        "/healthz",
        summary="Liveness: the model is loaded and the server answers.",
        response_model=Health,
        responses=SERVER_ERRORS,
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "model": model_info["name"]}

    @app.get(
        "/v1/models",
        summary="The model this server predicts with, and its card.",
        response_model=Models,
        responses=SERVER_ERRORS,
    )
    async def models() -> dict[str, Any]:
        return {"models": [model_info]}

    @app.post(
        "/v1/predict",
        summary="Faces in an image and the expression of each.",
        response_model=Prediction,
        responses=PREDICT_ERRORS,
        description=(
            "Send a multipart upload (field `file`, optional form field `detect`) or JSON "
            '`{"image": "<base64>", "detect": true}`. `detect=false` (also as a query parameter) '
            "classifies the whole image as one face crop. Faces come largest first with calibrated "
            "probabilities, highest first; with no face, `faces` is empty and `reason` says why."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "detect": {"type": "boolean", "default": True},
                            },
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["image"],
                            "properties": {
                                "image": {"type": "string", "format": "byte"},
                                "detect": {"type": "boolean", "default": True},
                            },
                        }
                    },
                },
            }
        },
    )
    async def predict(request: Request) -> dict[str, Any]:
        pool.check_room()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            data, body_detect = await read_multipart(request, max_upload_bytes, **timeouts)
        elif content_type == "application/json":
            data, body_detect = await read_json(request, max_upload_bytes, **timeouts)
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send multipart/form-data (field 'file') or application/json, not {content_type or 'no content type'}",
            )
        if len(data) > TRIM_ABOVE_BYTES:  # its copies (body, parts, bytes) are freed once it is answered
            release_memory_soon()
        query_detect = request.query_params.get("detect")
        detect = parse_detect(
            query_detect if query_detect is not None else True if body_detect is None else body_detect
        )
        check_image_size(data, max_pixels)
        (height, width), faces = await pool.run(decode_and_predict, data, detect)
        return {
            "model": model_info["name"],
            "image": {"width": width, "height": height},
            "faces": [face.to_dict() for face in faces],
            "reason": faces.reason,
        }

    return app
