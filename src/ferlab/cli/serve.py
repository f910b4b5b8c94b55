"""`ferlab serve` (the REST API) and `ferlab app` (the Streamlit web app)."""

from __future__ import annotations

import ipaddress
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from types import FrameType
from typing import Annotated, Any

import typer

from ferlab.cli.common import user_errors
from ferlab.cli.options import (
    BackendOpt,
    DetectorOpt,
    DeviceOpt,
    ModelOpt,
    PrecisionOpt,
    PriorOpt,
    TtaOpt,
)
from ferlab.errors import EXTRAS, FerlabError
from ferlab.inference.choices import DEFAULT_BACKEND, DEFAULT_DETECTOR, DEFAULT_PRECISION
from ferlab.models.choices import DEFAULT_DEVICE, DEFAULT_TTA

HostOpt = Annotated[str, typer.Option("--host", help="Address to bind; the default keeps the server on this machine.")]
UploadOpt = Annotated[int, typer.Option("--max-upload-mb", min=1, help="Largest upload accepted, in MB.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port to listen on (1-65535).")]


def require_extra(command: str, extra: str) -> None:
    """A one-line error naming the extra to install when a front end's packages are missing, before
    a server starts (ferlab.errors.EXTRAS lists each extra's modules)."""
    import importlib.util

    missing = [module for module, of in EXTRAS.items() if of == extra and importlib.util.find_spec(module) is None]
    if missing:
        raise FerlabError(
            f"ferlab {command} needs the {extra} extra ({', '.join(missing)} missing): pip install 'ferlab[{extra}]'"
        )


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise FerlabError(f"--port must be between 1 and 65535, got {port}")


def _warn_if_public(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        typer.secho(
            f"warning: binding {host} exposes the server beyond this machine; it has no authentication",
            fg=typer.colors.YELLOW,
            err=True,
        )


@user_errors
def serve(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    model: ModelOpt = None,
    max_upload_mb: UploadOpt = 10,
    max_megapixels: Annotated[
        float,
        typer.Option(
            "--max-megapixels", min=0.01, help="Largest image accepted, in megapixels (decoding costs memory)."
        ),
    ] = 25.0,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    backend: BackendOpt = DEFAULT_BACKEND,
    precision: PrecisionOpt = DEFAULT_PRECISION,
    tta: TtaOpt = DEFAULT_TTA,
    prior: PriorOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Requests classified at once, each by its own model copy (default: CPUs)."
        ),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(
            "--max-queue", min=0, help="Requests that may wait for a worker before 503 (default: 12 per worker)."
        ),
    ] = None,
) -> None:
    """Serve the REST API: POST /v1/predict, GET /v1/models, GET /healthz; interactive docs at /docs."""
    _check_port(port)
    if not math.isfinite(max_megapixels):
        raise FerlabError(f"--max-megapixels must be a finite number, got {max_megapixels}")
    require_extra("serve", "api")
    from ferlab.apps.api import create_app, run_server  # the API launcher: the one import of apps left (see pyproject)
    from ferlab.models.shipped import default_model

    reference = model or default_model()
    api = create_app(
        reference,
        workers=workers,
        max_waiting=max_queue,
        max_upload_bytes=max_upload_mb * 1024 * 1024,
        max_pixels=int(max_megapixels * 1_000_000),
        detector=detector,
        backend=backend,
        precision=precision,
        tta=tta,
        prior=prior,
        device=device,
        preload_detector=True,
    )
    _warn_if_public(host)
    run_server(api, host, port)


@user_errors
def app_command(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8501,
    model: ModelOpt = None,
    add_model: Annotated[
        list[str] | None, typer.Option("--add-model", help="Another model.pt or run folder to offer (repeatable).")
    ] = None,
    max_upload_mb: UploadOpt = 10,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    backend: BackendOpt = DEFAULT_BACKEND,
    precision: PrecisionOpt = DEFAULT_PRECISION,
    tta: TtaOpt = DEFAULT_TTA,
    prior: PriorOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
) -> None:
    """Start the web app: upload a photo or take a snapshot, see each face's expression, Grad-CAM and the model card.

    The sidebar's class-prior slider starts at --prior; the other options hold for every model it offers.
    """
    _check_port(port)
    require_extra("app", "web")
    import ferlab
    from ferlab.inference.catalog import EXTRA_MODELS_ENV
    from ferlab.inference.choices import OPTIONS_ENV, check_options, options_to_env
    from ferlab.models.shipped import MODEL_ENV, default_model, member_references, resolve

    options: dict[str, Any] = {
        "detector": detector,
        "backend": backend,
        "precision": precision,
        "tta": tta,
        "prior": prior,
        "device": device,
    }
    check_options(**options)  # fail here with a clear message rather than in the browser
    reference = model or default_model()
    for item in [reference, *(add_model or [])]:
        for member in member_references(item):
            resolve(member)
    environment = {**os.environ, MODEL_ENV: reference, OPTIONS_ENV: options_to_env(options)}
    if add_model:
        environment[EXTRA_MODELS_ENV] = os.pathsep.join(add_model)
    _warn_if_public(host)
    webapp = os.path.join(os.path.dirname(ferlab.__file__), "apps", "webapp.py")  # run by Streamlit, not imported
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        webapp,
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.maxUploadSize",
        str(max_upload_mb),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]
    raise typer.Exit(run_child(command, environment))


def run_child(command: list[str], environment: dict[str, str]) -> int:
    """Run a server child process until it ends; SIGTERM and SIGINT sent to us are passed on
    to it and waited for, so stopping `ferlab app` always frees its port.

    The child gets its own process group (a Ctrl-C in the terminal reaches it once, through
    us) and, on Linux, SIGTERM if we die without a chance to forward anything (kill -9).
    """
    child = subprocess.Popen(command, env=environment, process_group=0, preexec_fn=_parent_death_signal())  # noqa: PLW1509  (deliberate: the child dies with us)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = child.wait()
                return 128 - code if code < 0 else code  # killed by signal N: the shell's 128 + N
            except KeyboardInterrupt:  # a SIGINT that arrived before our handler was set
                forward(signal.SIGINT, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:  # we are leaving on an exception: take the child with us
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def _parent_death_signal() -> Callable[[], None] | None:
    """For the child, before exec: ask Linux to send it SIGTERM when we die (PR_SET_PDEATHSIG).

    The C function is looked up here, in the parent; the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
