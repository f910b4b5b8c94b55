"""Load check for the REST API: concurrent clients against a local `ferlab serve`, latency percentiles.

Starts `ferlab serve` on a free localhost port with --model (or targets a running server
with --url; only loopback addresses are accepted), then sends --requests multipart uploads
of one photo from --clients threads, each on its own keep-alive connection. Reports
throughput, p50/p90/p99/max latency and the error count (expected: zero), and checks that
every answer is the same as the first.

    python benchmarks/load_check.py --model runs/blobs                # start a server, 400 requests, 4 clients
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


def start_server(model: str, port: int) -> subprocess.Popen[bytes]:
    """`ferlab serve` in a child process (its own interpreter, so clients and server do not share a GIL)."""
    command = [
        sys.executable,
        "-c",
        "import typer; from ferlab.cli.serve import serve; typer.run(serve)",
        "--model",
        model,
        "--port",
        str(port),
    ]
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


def client(
    host: str,
    port: int,
    path: str,
    body: bytes,
    count: int,
    latencies: list[float],
    answers: list[bytes],
    errors: list[str],
) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    for _ in range(count):
        start = time.perf_counter()
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            continue
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            errors.append(f"HTTP {response.status}: {payload[:200]!r}")
        else:
            answers.append(payload)
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="Start `ferlab serve --model MODEL` on a free localhost port.")
    target.add_argument("--url", help="A running server on this machine, e.g. http://127.0.0.1:8000.")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--image", type=Path, default=GRACE_HOPPER, help="The photo to send (default: a one-face portrait)."
    )
    parser.add_argument(
        "--no-detect", action="store_true", help="Send detect=false: classification without face detection."
    )
    args = parser.parse_args()

    server = None
    if args.url:
        parsed = urllib.parse.urlsplit(args.url)
        host, port = parsed.hostname or "", parsed.port or 80
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            sys.exit("a load check only targets this machine: use a loopback address such as 127.0.0.1")
    else:
        host, port = "127.0.0.1", free_port()
        server = start_server(args.model, port)
    try:
        body = multipart(args.image.read_bytes(), args.image.name)
        path = "/v1/predict?detect=false" if args.no_detect else "/v1/predict"
        latencies: list[float] = []
        answers: list[bytes] = []
        errors: list[str] = []
        client(host, port, path, body, 3, [], [], errors)  # warm-up, not timed
        shares = [args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)]
        threads = [
            threading.Thread(target=client, args=(host, port, path, body, share, latencies, answers, errors))
            for share in shares
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    milliseconds = np.array(latencies) * 1000
    distinct = {json.dumps(json.loads(a), sort_keys=True) for a in answers}
    faces = len(json.loads(answers[0])["faces"]) if answers else 0
    print(
        f"{len(latencies)} requests from {args.clients} clients in {seconds:.1f} s: {len(latencies) / seconds:.1f} req/s; "
        f"{args.image.name} ({len(body):,} bytes, {faces} face(s))"
    )
    if len(milliseconds):
        p50, p90, p99 = np.percentile(milliseconds, [50, 90, 99])
        print(f"latency ms: p50 {p50:.0f}  p90 {p90:.0f}  p99 {p99:.0f}  max {milliseconds.max():.0f}")
    print(f"errors: {len(errors)}; distinct answers: {len(distinct)} (expected 1)")
    for error in sorted(set(errors))[:5]:
        print(f"  {error}")
    if errors or len(distinct) > 1:
        sys.exit(1)


if __name__ == "__main__":
    main()
