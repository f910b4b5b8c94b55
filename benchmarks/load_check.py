"""Load check for the REST API: concurrent clients against a local `ferlab serve`, latency percentiles.

Starts `ferlab serve` on a free localhost port with --model (default: the shipped default
model; or targets a running server with --url; only loopback addresses are accepted), then,
for each --clients level, sends --requests multipart uploads of one 640x480 JPEG frame with
one face (matplotlib's Grace Hopper portrait, cropped to 4:3) from that many threads, each on
its own keep-alive connection. Reports throughput of answered requests, their latency
percentiles, how many were refused with 503 (the server's back-pressure) and how fast, and
errors (anything else; expected: zero), and checks that every answer is the same.

    python benchmarks/load_check.py                                   # the default model, 4, 16 and 64 clients
    python benchmarks/load_check.py --model runs/blobs --clients 4 --requests 200
    python benchmarks/load_check.py --url http://127.0.0.1:8000 --requests 200 --no-detect
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib
import numpy as np

from ferlab.models.shipped import DEFAULT_MODEL

GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
BOUNDARY = "ferlab-load-check"


def multipart(image: bytes, filename: str) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def frame_640x480(photo: Path) -> bytes:
    """A 640x480 JPEG (quality 90) of the photo's central 4:3 part: a webcam-sized frame."""
    import io

    from PIL import Image

    with Image.open(photo) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    crop_height = min(height, width * 3 // 4)
    top = (height - crop_height) // 3  # keep the face, which sits in the upper half of a portrait
    frame = rgb.crop((0, top, width, top + crop_height)).resize((640, 480), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def start_server(model: str, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    """`ferlab serve` in a child process (its own interpreter, so clients and server do not share a GIL)."""
    command = [sys.executable, "-m", "ferlab", "serve", "--model", model, "--port", str(port), *extra]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"ferlab serve exited: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit("ferlab serve did not answer /healthz within 120 s")


class Tally:
    """What one load level saw: latencies of answered and of refused (503) requests, errors, answers."""

    def __init__(self) -> None:
        self.answered: list[float] = []
        self.refused: list[float] = []
        self.errors: list[str] = []
        self.answers: list[bytes] = []
        self.lock = threading.Lock()


def client(host: str, port: int, path: str, body: bytes, count: int, tally: Tally) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    for _ in range(count):
        start = time.perf_counter()
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            with tally.lock:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            continue
        elapsed = time.perf_counter() - start
        with tally.lock:
            if response.status == 200:
                tally.answered.append(elapsed)
                tally.answers.append(payload)
            elif response.status == 503 and response.getheader("Retry-After"):
                tally.refused.append(elapsed)
            else:
                tally.errors.append(f"HTTP {response.status}: {payload[:200]!r}")
    connection.close()


def run_level(host: str, port: int, path: str, body: bytes, clients: int, requests: int) -> tuple[Tally, float]:
    tally = Tally()
    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(host, port, path, body, share, tally)) for share in shares]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"Start `ferlab serve --model MODEL` (default: {DEFAULT_MODEL})."
    )
    target.add_argument("--url", help="A running server on this machine, e.g. http://127.0.0.1:8000.")
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 16, 64], help="Client counts, one level each.")
    parser.add_argument("--requests", type=int, default=None, help="Requests per level (default: 25 per client).")
    parser.add_argument("--image", type=Path, default=GRACE_HOPPER, help="The photo to frame (default: a portrait).")
    parser.add_argument("--no-detect", action="store_true", help="Send detect=false: classification only.")
    parser.add_argument("--serve-args", default="", help="Extra `ferlab serve` options, e.g. '--workers 2'.")
    args = parser.parse_args()

    server = None
    if args.url:
        parsed = urllib.parse.urlsplit(args.url)
        host, port = parsed.hostname or "", parsed.port or 80
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            sys.exit("a load check only targets this machine: use a loopback address such as 127.0.0.1")
    else:
        host, port = "127.0.0.1", free_port()
        server = start_server(args.model, port, args.serve_args.split())
    body = multipart(frame_640x480(args.image), "frame.jpg")
    path = "/v1/predict?detect=false" if args.no_detect else "/v1/predict"
    results = []
    try:
        client(host, port, path, body, 3, Tally())  # warm-up, not timed
        for clients in args.clients:
            results.append((clients, *run_level(host, port, path, body, clients, args.requests or 25 * clients)))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    print(f"640x480 JPEG frame ({len(body):,} bytes), {args.url or args.model}, {path}")
    print("| clients | answered | req/s | p50 ms | p99 ms | max ms | 503 | slowest 503 ms | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    for clients, tally, seconds in results:
        answered = np.array(tally.answered) * 1000
        p50, p99, slowest = (
            np.percentile(answered, [50, 99]).tolist() + [answered.max()] if len(answered) else [0, 0, 0]
        )
        refused = max(tally.refused, default=0.0) * 1000
        print(
            f"| {clients} | {len(answered)} | {len(answered) / seconds:.1f} | {p50:.0f} | {p99:.0f} | {slowest:.0f} | "
            f"{len(tally.refused)} | {refused:.0f} | {len(tally.errors)} |"
        )
        distinct = {json.dumps(json.loads(a), sort_keys=True) for a in tally.answers}
        for error in sorted(set(tally.errors))[:5]:
            print(f"  {clients} clients: {error}")
        if len(distinct) > 1:
            print(f"  {clients} clients: {len(distinct)} different answers to the same frame")
        failed = failed or bool(tally.errors) or len(distinct) > 1
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
