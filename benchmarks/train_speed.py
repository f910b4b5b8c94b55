"""Training throughput (images/s) of ferlab models on this machine's CPU.

For each model: synthetic batches at the model's input size, AdamW, cross-entropy; a few
warm-up steps, then the mean over timed steps. Modes: ``fp32`` (contiguous NCHW, float32)
and ``bf16`` (channels_last + ``torch.autocast("cpu", dtype=torch.bfloat16)``).

    python benchmarks/train_speed.py                       # the small scratch models
    python benchmarks/train_speed.py --models seed_cnn mobilenet_v2 --steps 5
    python benchmarks/train_speed.py --models resnet18_fer:width=32
    python benchmarks/train_speed.py --models resnet9_fer --modes fp32 --devices auto cpu --rounds 3

``--devices`` times each model on each device (``auto`` resolves as ``train.device: auto``:
CUDA, then MPS, then the CPU), in interleaved rounds, and reports the best round of each,
so ``auto`` and ``cpu`` on a machine without a GPU should agree within noise (5 %). On a GPU,
``bf16`` means the trainer's choice for that device: bf16, or fp16 where the GPU lacks bf16.

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
from ferlab.training.device import Runtime, choose_precision, resolve_device

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


def images_per_second(
    name: str, config: dict, mode: str, batch: int, warmup: int, steps: int, device: str = "cpu"
) -> float:
    torch.manual_seed(0)
    where = resolve_device(device)
    if where.type == "cpu":  # exactly the CPU recipe this benchmark has always timed
        runtime = Runtime(where, "bf16" if mode == "bf16" else "fp32", channels_last=mode == "bf16")
    else:
        runtime = Runtime(where, choose_precision(where, mode == "bf16"), channels_last=mode == "bf16")
    model = create_model(name, 7, **config).train()
    s = model
    x = torch.randn(batch, s.in_channels, s.input_size, s.input_size)
    y = torch.randint(0, 7, (batch,))
    if mode == "bf16":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model, x, y = model.to(where), x.to(where), y.to(where)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = runtime.grad_scaler()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with runtime.autocast():
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def sync() -> None:
        if where.type == "cuda":
            torch.cuda.synchronize(where)

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--devices", nargs="+", default=["cpu"], help="auto, cpu, cuda, cuda:N, mps (one column each)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions; the best of each is shown")
    args = parser.parse_args(argv)
    if args.batch < 2 or args.batch % 2:
        parser.error("--batch must be even (see the module docstring)")
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.warmup} warm-up + {args.steps} timed steps"
    )
    columns = [(d, m) for d in args.devices for m in args.modes]
    label = lambda d, m: f"{m} img/s" if args.devices == ["cpu"] else f"{d} {m}"  # noqa: E731
    header = f"{'model':<28} {'params':>11} {'input':>8}" + "".join(f" {label(d, m):>14}" for d, m in columns)
    print(header)
    print("-" * len(header))
    for text in args.models:
        name, config = parse_model(text)
        try:
            model = create_model(name, 7, **config)
        except FerlabError as e:
            print(f"{text}: {e}", file=sys.stderr)
            return 2
        s = model
        row = f"{text:<28} {param_counts(model)[0]:>11,} {f'{s.in_channels}x{s.input_size}':>8}"
        best = dict.fromkeys(columns, 0.0)
        for _ in range(args.rounds):  # interleaved, so a busy spell on a shared machine hits every column
            for device, mode in columns:
                rate = images_per_second(name, config, mode, args.batch, args.warmup, args.steps, device)
                best[device, mode] = max(best[device, mode], rate)
        row += "".join(f" {best[c]:>14.1f}" for c in columns)
        if len(args.devices) > 1:
            first = args.devices[0]
            row += "".join(
                f"  {d}/{first} {m}: {best[d, m] / best[first, m]:.3f}" for d in args.devices[1:] for m in args.modes
            )
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
