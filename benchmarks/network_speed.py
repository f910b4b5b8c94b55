"""How fast a network runs per face before training it: the fast model's width was chosen with this.

    python benchmarks/network_speed.py                               # ResNet-9 widths 8-32, mini-Xception
    python benchmarks/network_speed.py --net resnet9_fer:width=8 --net mini_xception

Each network is built untrained (the weights do not change its speed), exported to ONNX,
quantised to static int8 on random calibration faces, and timed at batch 1 with 1 intra-op
thread (ONNX Runtime's `session.run` alone), fp32 and int8, in interleaved rounds. Widths
that are not multiples of 8 fall off ONNX Runtime's fast convolution kernels: compare
`width=8`, `10` and `12`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from ferlab.errors import run_script
from ferlab.inference.engine import OnnxBackend, export_onnx
from ferlab.inference.quantize import quantize_int8
from ferlab.labels import get_label_set
from ferlab.models.base import param_counts
from ferlab.models.bundle import ModelBundle
from ferlab.models.registry import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8 import faces_per_second
from train_speed import parse_model

DEFAULT_NETS = [f"resnet9_fer:width={w}" for w in (8, 10, 12, 16, 32)] + ["mini_xception"]


def main() -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", action="append", help="name[:key=value,...] (repeatable)")
    parser.add_argument("--classes", default="ferplus")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per network, precision and round")
    args = parser.parse_args()
    label_set = get_label_set(args.classes)
    rng = np.random.default_rng(0)
    backends, sizes = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for text in args.net or DEFAULT_NETS:
            name, params = parse_model(text)
            model = create_model(name, len(label_set), **params).eval()
            fp32 = export_onnx(ModelBundle.of(model, label_set), Path(scratch) / f"{len(sizes)}.onnx")
            calibration = rng.normal(size=(60, model.in_channels, model.input_size, model.input_size))
            int8 = quantize_int8(fp32, fp32.with_suffix(".int8.onnx"), calibration.astype(np.float32))
            face = rng.normal(size=(1, model.in_channels, model.input_size, model.input_size)).astype(np.float32)
            for precision, path in (("fp32", fp32), ("int8", int8)):
                backends[text, precision] = (OnnxBackend(path, threads=1), face)
            sizes[text] = (param_counts(model)[0], fp32.stat().st_size / 1e6)
        speeds: dict[tuple[str, str], list[float]] = {key: [] for key in backends}
        for _ in range(args.rounds):
            for key, (backend, face) in backends.items():
                speeds[key].append(faces_per_second(backend, face, args.seconds))
    print(f"batch 1, 1 thread, ONNX Runtime {ort.__version__}, median of {args.rounds} interleaved rounds")
    print("| network | parameters | fp32 MB | fp32 faces/s | int8 faces/s |")
    print("|---|---:|---:|---:|---:|")
    for text, (parameters, megabytes) in sizes.items():
        fp32_speed, int8_speed = (statistics.median(speeds[text, p]) for p in ("fp32", "int8"))
        print(f"| `{text}` | {parameters:,} | {megabytes:.2f} | {fp32_speed:,.0f} | {int8_speed:,.0f} |")
    return 0


if __name__ == "__main__":
    run_script(main)
