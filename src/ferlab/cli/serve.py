"""`ferlab serve` (the REST API) and `ferlab app` (the Streamlit web app)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from typing import Annotated, Optional

import typer

from ferlab.cli.main import user_errors

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Shipped model name, model.pt or run folder (default: $FERLAB_MODEL, else ferplus8)."),
]
HostOpt = Annotated[str, typer.Option("--host", help="Address to bind; the default keeps the server on this machine.")]
UploadOpt = Annotated[int, typer.Option("--max-upload-mb", min=1, help="Largest upload accepted, in MB.")]


def _warn_if_public(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        typer.secho(f"warning: binding {host} exposes the server beyond this machine; it has no authentication",
                    fg=typer.colors.YELLOW, err=True)


@user_errors
def serve(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    model: ModelOpt = None,
    max_upload_mb: UploadOpt = 10,
    detector: Annotated[str, typer.Option("--detector", help="Face detector: auto, haar or mediapipe.")] = "auto",
    backend: Annotated[str, typer.Option("--backend", help="auto (ONNX Runtime if installed), onnx or torch.")] = "auto",
) -> None:
    """Serve the REST API: POST /v1/predict, GET /v1/models, GET /healthz; interactive docs at /docs."""
    import uvicorn

    from ferlab.apps import default_model
    from ferlab.apps.api import create_app
    from ferlab.inference.predictor import load

    reference = model or default_model()
    predictor = load(reference, detector=detector, backend=backend)  # type: ignore[arg-type]
    _ = predictor.detector  # load the detector now: a bad --detector fails here, not on the first request
    _warn_if_public(host)
    uvicorn.run(create_app(predictor, reference=reference, max_upload_bytes=max_upload_mb * 1024 * 1024),
                host=host, port=port, log_level="info")


@user_errors
def app_command(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8501,
    model: ModelOpt = None,
    add_model: Annotated[
        Optional[list[str]], typer.Option("--add-model", help="Another model.pt or run folder to offer (repeatable).")
    ] = None,
    max_upload_mb: UploadOpt = 10,
) -> None:
    """Start the web app: upload a photo or take a snapshot, see each face's expression, Grad-CAM and the model card."""
    from ferlab.apps import EXTRA_MODELS_ENV, MODEL_ENV, default_model
    from ferlab.apps import __file__ as apps_init
    from ferlab.inference.predictor import resolve_model

    reference = model or default_model()
    for item in [reference, *(add_model or [])]:
        resolve_model(item)  # fail here with a clear message rather than in the browser
    environment = {**os.environ, MODEL_ENV: reference}
    if add_model:
        environment[EXTRA_MODELS_ENV] = os.pathsep.join(add_model)
    _warn_if_public(host)
    webapp = os.path.join(os.path.dirname(apps_init), "webapp.py")
    command = [
        sys.executable, "-m", "streamlit", "run", webapp, "--server.address", host, "--server.port", str(port),
        "--server.maxUploadSize", str(max_upload_mb), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]
    raise typer.Exit(subprocess.call(command, env=environment))
