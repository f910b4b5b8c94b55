"""Server limits: stalled and idle connections are closed, and memory comes back after large images.

Starts `ferlab serve` on a free 127.0.0.1 port (loopback only, bounded: --connections
sockets, --bursts bursts of large images) and measures two things:

1. Connections: opens --connections sockets, a third sending nothing, a third sending half
   a request's headers, a third idle on keep-alive after one answered request, while a client
   keeps sending normal requests. Reports how many the server closed within --within seconds,
   the slowest close, and the normal requests answered meanwhile.
2. Memory: the server's resident size (VmRSS) at rest, its peak during bursts of concurrent
   uploads of a 25 MP JPEG (5000x5000, the API's default cap), and once the bursts are over.

    python benchmarks/server_limits.py                       # 200 connections, bursts of 12 and 24
    python benchmarks/server_limits.py --connections 50 --bursts 6

Exit status 1 when a connection outlived --within or the resident size after the bursts is
over --memory-slack MB above its level before them.
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_check import GRACE_HOPPER, frame_640x480, free_port, multipart

HOST = "127.0.0.1"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ferlab", "serve", "--port", str(port), "--max-upload-mb", "40", *extra]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("ferlab serve exited early")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit("ferlab serve did not answer /healthz within 120 s")


def post(port: int, body: bytes, timeout: float = 120) -> int:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/v1/predict",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=ferlab-load-check"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def closed_at(sock: socket.socket, started: float, limit: float, times: list[float], lock: threading.Lock) -> None:
    sock.settimeout(max(0.1, started + limit - time.monotonic()))
    try:
        while sock.recv(4096):
            pass
        closed = time.monotonic() - started
    except TimeoutError:
        closed = float("inf")
    except OSError:
        closed = time.monotonic() - started
    with lock:
        times.append(closed)
    sock.close()


def connections(port: int, count: int, within: float, frame: bytes) -> tuple[list[float], int, int]:
    """Close times of `count` stalled or idle sockets, and normal requests answered / failed meanwhile."""
    socks = []
    for i in range(count):
        sock = socket.create_connection((HOST, port), timeout=10)
        if i % 3 == 1:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: multi")
        elif i % 3 == 2:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            sock.recv(4096)  # answered; now idle on keep-alive
        socks.append(sock)
    started = time.monotonic()
    times: list[float] = []
    lock = threading.Lock()
    watchers = [threading.Thread(target=closed_at, args=(s, started, within + 2, times, lock)) for s in socks]
    for watcher in watchers:
        watcher.start()
    answered = failed = 0
    while time.monotonic() - started < within:  # normal traffic goes on meanwhile
        if post(port, multipart(frame, "frame.jpg"), timeout=10) == 200:
            answered += 1
        else:
            failed += 1
        time.sleep(0.2)
    for watcher in watchers:
        watcher.join()
    return times, answered, failed


def large_jpeg(side: int) -> bytes:
    """A side x side JPEG with the portrait tiled over a gradient: a photo-like 25 MP upload."""
    with Image.open(GRACE_HOPPER) as photo:
        tile = photo.convert("RGB")
    ramp = np.linspace(40, 220, side, dtype=np.float32)
    canvas = Image.fromarray(np.dstack([np.add.outer(ramp, ramp) / 2] * 3).astype(np.uint8))
    for y in range(0, side, tile.height * 2):
        for x in range(0, side, tile.width * 2):
            canvas.paste(tile, (x, y))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def memory(
    server: subprocess.Popen[bytes], port: int, bursts: list[int], side: int
) -> tuple[float, float, float, list]:
    body = multipart(large_jpeg(side), "large.jpg")
    print(f"RSS at start (after the connection test): {rss_mb(server.pid):.0f} MB")
    post(port, body)  # one large image first: buffers and lazy imports that stay for good
    time.sleep(2)
    before = rss_mb(server.pid)
    peak, statuses = before, []
    for size in bursts:
        with ThreadPoolExecutor(size) as pool:
            futures = [pool.submit(post, port, body) for _ in range(size)]
            while not all(f.done() for f in futures):
                peak = max(peak, rss_mb(server.pid))
                time.sleep(0.05)
            statuses += [f.result() for f in futures]
    time.sleep(3)
    return before, peak, rss_mb(server.pid), statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=200, help="Stalled or idle sockets to open (at most 500).")
    parser.add_argument("--within", type=float, default=15.0, help="Seconds by which each must be closed.")
    parser.add_argument("--bursts", type=int, nargs="+", default=[12, 24], help="Concurrent large uploads per burst.")
    parser.add_argument("--side", type=int, default=5000, help="Side of the large JPEG (5000: 25 MP).")
    parser.add_argument("--memory-slack", type=float, default=150.0, help="MB the RSS may stay above its rest level.")
    parser.add_argument("--serve-args", default="", help="Extra `ferlab serve` options, e.g. '--workers 2'.")
    args = parser.parse_args()
    if not 1 <= args.connections <= 500 or any(not 1 <= b <= 64 for b in args.bursts):
        sys.exit("keep it bounded: 1-500 connections, bursts of 1-64")
    port = free_port()
    server = start_server(port, args.serve_args.split())
    try:
        frame = frame_640x480(GRACE_HOPPER)
        times, answered, failed = connections(port, args.connections, args.within, frame)
        before, peak, after, statuses = memory(server, port, args.bursts, args.side)
    finally:
        server.terminate()
        server.wait(10)
    closed = [t for t in times if t <= args.within]
    print(f"connections: {len(closed)} of {len(times)} stalled or idle ones closed within {args.within:g} s ", end="")
    print(f"(slowest {max(times):.1f} s); normal requests meanwhile: {answered} answered, {failed} not")
    answers = {code: statuses.count(code) for code in sorted(set(statuses))}
    print(
        f"memory: RSS {before:.0f} MB at rest, peak {peak:.0f} MB during bursts of {args.bursts} "
        f"{args.side}x{args.side} JPEGs (answers {answers}), {after:.0f} MB after ({after - before:+.0f} MB)"
    )
    if len(closed) < len(times) or failed or after - before > args.memory_slack:
        sys.exit(1)


if __name__ == "__main__":
    main()
