"""Where and in what precision training runs: `train.device` (auto, cpu, cuda, cuda:N, mps),
autocast, channels_last, the gradient scaler, and whether the data lives on the device.

Nothing here changes process state when imported; `resolve_device` only asks torch what
hardware there is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from ferlab.errors import FerlabError
from ferlab.models.base import FerModel
from ferlab.models.choices import check_device
from ferlab.training.config import TrainConfig
from ferlab.training.data import TrainingData
from ferlab.training.distributed import Ranks, init_process_group

logger = logging.getLogger("ferlab.training")

PRECISION_LABELS = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}
"""How metrics.json and the model record name a precision (`bf16 autocast` as before)."""

DATA_ON_DEVICE_SHARE = 0.25
"""Keep the uint8 training images on the GPU when they take at most this share of its free memory."""


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """`auto`: CUDA, then MPS, then the CPU. Under torchrun each process takes `cuda:LOCAL_RANK`
    when it was given plain `cuda` or `auto`."""
    check_device(name, auto=True)
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FerlabError(f"device {name}: this torch sees no CUDA GPU (torch {torch.__version__})")
        if name == "cuda":
            name = f"cuda:{local_rank or 0}"
        index = int(name.split(":")[1])
        if index >= torch.cuda.device_count():
            raise FerlabError(f"device {name}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FerlabError("device mps: this torch has no MPS (Apple GPU) support here")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    import platform

    return platform.processor() or platform.machine() or "cpu"


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively. Where it only emulates it (AVX2 machines,
    e.g. the project's 2-core AMD EPYC), autocast made ResNet-9 20x and EfficientNet-Lite0 7x
    slower than float32; with AVX512-BF16 or AMX it about doubles training speed."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def choose_precision(device: torch.device, want_bf16: bool) -> str:
    """fp32, bf16 or fp16 for `train.bf16` on this device.

    CPU: bf16 only with native support, else fp32 (logged, and recorded as metrics.json's
    `precision`: the default asks for bf16 where it is fast, so its absence is no fault to warn
    of). CUDA: bf16 where the GPU has it, else fp16 with a gradient scaler. MPS: fp32.
    """
    if not want_bf16:
        return "fp32"
    if device.type == "cpu":
        if native_bf16():
            return "bf16"
        logger.info(
            "train.bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), where bf16 autocast "
            "runs 7-20x slower than float32; training in float32"
        )
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


@dataclass
class Runtime:
    """The device side of one training process: device, precision, memory format, rank."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = True
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes the run folder, logs and checkpoints."""
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def precision_label(self) -> str:
        return PRECISION_LABELS[self.precision]

    def autocast(self) -> AbstractContextManager[Any]:
        if self.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False) if self.device.type == "cpu" else nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling; bf16 and fp32 do not (None keeps the CPU step as it was)."""
        return torch.amp.GradScaler("cuda") if self.precision == "fp16" else None

    def prepare(self, batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        """uint8 or float [0, 255] batch -> normalised model input on the device (the same
        arithmetic as `ferlab.data.tensors.normalize`, with mean and std on the batch's device)."""
        if batch.device != self.device:
            batch = batch.to(self.device, non_blocking=True)
        channels = batch.shape[1]
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=batch.device).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32, device=batch.device).reshape(1, -1, 1, 1)
        x = (batch.float() / 255.0 - mean_t.expand(1, channels, 1, 1)) / std_t.expand(1, channels, 1, 1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def describe(self) -> str:
        ranks = f", {self.world_size} processes" if self.world_size > 1 else ""
        return f"{self.device} ({device_name(self.device)}), {self.precision_label}{ranks}"


def configure_backends(device: torch.device) -> None:
    """cuDNN autotuning for the fixed-size batches of training (CUDA only)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def fits_on_device(device: torch.device, nbytes: int) -> bool:
    """Whether a uint8 dataset of `nbytes` can stay on the GPU (augmentation then runs there too)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DATA_ON_DEVICE_SHARE * free


def make_runtime(name: str, train: TrainConfig, ranks: Ranks) -> Runtime:
    """Resolve the device, join the other ranks (if any), and choose the precision."""
    device = resolve_device(name, ranks.local_rank if ranks.distributed else None)
    init_process_group(ranks, device)
    configure_backends(device)
    return Runtime(device, choose_precision(device, train.bf16), train.channels_last, ranks.rank, ranks.world_size)


def place(
    model: FerModel, data: TrainingData, teacher: torch.Tensor | None, runtime: Runtime, train: TrainConfig
) -> tuple[FerModel, torch.Tensor | None]:
    """The model onto the device (channels_last, SyncBatchNorm where asked and possible); on a GPU
    the uint8 training data too where it fits (augmentation then runs there), else pinned memory."""
    if train.sync_bn and runtime.world_size > 1:
        if runtime.cuda:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("train.sync_bn: torch syncs batch norm on GPUs only; each CPU rank normalises its own slice")
    if train.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model = model.to(runtime.device)
    if runtime.cuda:
        resident = fits_on_device(runtime.device, data.train.images.numel())
        data.train = data.train.to(runtime.device) if resident else data.train.pinned()
        teacher = teacher.to(runtime.device) if teacher is not None else None
        data.class_weights = data.class_weights.to(runtime.device) if data.class_weights is not None else None
        logger.info("training images %s", "kept on the GPU" if resident else "in pinned memory")
    return model, teacher
