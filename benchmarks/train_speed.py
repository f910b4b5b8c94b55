"""Training throughput (images/s) of ferlab models on this machine's CPU.

For each model: synthetic batches at the model's input size, AdamW, cross-entropy; a few
warm-up steps, then the mean over timed steps. Modes: ``fp32`` (contiguous NCHW, float32)
and ``bf16`` (channels_last + ``torch.autocast("cpu", dtype=torch.bfloat16)``).

    python benchmarks/train_speed.py                       # the small scratch models
    python benchmarks/train_speed.py --models seed_cnn mobilenet_v2 --steps 5
    python benchmarks/train_speed.py --models resnet18_fer:width=32

A model may carry options as ``name:key=value,key=value`` (ints, floats, or strings).
Batch sizes must be even: torch 2.13 on CPU has crashed in backward with channels_last,
2 threads and an odd batch (a strided 1x1 conv).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from ferlab.errors import FerlabError
from ferlab.models import create_model, param_counts

DEFAULT_MODELS = ["baseline_cnn", "mini_xception", "resnet9_fer", "seed_cnn", "vgg13_fer"]


def parse_model(text: str) -> tuple[str, dict]:
    name, _, options = text.partition(":")
    config: dict = {}
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                config[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            config[key] = {"true": True, "false": False}.get(value.lower(), value)
    return name, config


def images_per_second(name: str, config: dict, mode: str, batch: int, warmup: int, steps: int) -> float:
    torch.manual_seed(0)
    model = create_model(name, 7, **config).train()
    s = model.spec
    x = torch.randn(batch, s.in_channels, s.input_size, s.input_size)
    y = torch.randint(0, 7, (batch,))
    if mode == "bf16":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    if args.batch < 2 or args.batch % 2:
        parser.error("--batch must be even (see the module docstring)")
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.warmup} warm-up + {args.steps} timed steps"
    )
    header = f"{'model':<28} {'params':>11} {'input':>8}" + "".join(f" {m + ' img/s':>11}" for m in args.modes)
    print(header)
    print("-" * len(header))
    for text in args.models:
        name, config = parse_model(text)
        try:
            model = create_model(name, 7, **config)
        except FerlabError as e:
            print(f"{text}: {e}", file=sys.stderr)
            return 2
        s = model.spec
        row = f"{text:<28} {param_counts(model)[0]:>11,} {f'{s.in_channels}x{s.input_size}':>8}"
        for mode in args.modes:
            rate = images_per_second(name, config, mode, args.batch, args.warmup, args.steps)
            row += f" {rate:>11.1f}"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
