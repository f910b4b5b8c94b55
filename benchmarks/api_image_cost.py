"""What one large image costs the REST API: status, CPU seconds and peak memory of one request.

Sends one grey SIDE x SIDE JPEG to `create_app` around the default model (Haar detector,
ONNX Runtime) through FastAPI's in-process TestClient, with the API's pixel cap set to
--max-megapixels, and prints the status, the file size, CPU time (all threads) and how far
the process's peak resident memory rose during the request.

    python benchmarks/api_image_cost.py 7000 --max-megapixels 50   # the old cap: decoded
    python benchmarks/api_image_cost.py 7000                        # the default 25 MP cap: 413
    python benchmarks/api_image_cost.py 5000                        # 25 MP: the most a request may cost
"""

from __future__ import annotations

import argparse
import io
import resource
import time

from fastapi.testclient import TestClient
from PIL import Image

from ferlab.apps.api import API_MAX_PIXELS, create_app
from ferlab.inference.predictor import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", type=int, help="Width and height of the test image, in pixels.")
    parser.add_argument("--max-megapixels", type=float, default=API_MAX_PIXELS / 1e6)
    parser.add_argument("--model", default=None, help="Model (default: the shipped default).")
    args = parser.parse_args()

    buffer = io.BytesIO()
    Image.new("RGB", (args.side, args.side), (128, 128, 128)).save(buffer, "JPEG", quality=50)
    data = buffer.getvalue()
    predictor = load(args.model, detector="haar", backend="onnx")
    client = TestClient(create_app(predictor, max_pixels=int(args.max_megapixels * 1e6)))
    client.get("/healthz")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu, wall = time.process_time(), time.perf_counter()
    response = client.post("/v1/predict", files={"file": ("big.jpg", data, "image/jpeg")})
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    error = response.json().get("error") if response.status_code != 200 else None
    print(
        f"{args.side}x{args.side} ({args.side * args.side / 1e6:.1f} MP, {len(data):,}-byte JPEG), cap "
        f"{args.max_megapixels:g} MP: status {response.status_code}{f' {error}' if error else ''}, "
        f"CPU {cpu:.2f} s, wall {wall:.2f} s, peak memory +{peak:.0f} MB"
    )


if __name__ == "__main__":
    main()
