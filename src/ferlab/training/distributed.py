"""Several training processes (DistributedDataParallel): process group, collectives, launcher.

`torchrun --nproc-per-node N --no-python ferlab train CONFIG` starts N ranks that each run
`ferlab train`; `ferlab train CONFIG --nproc N` starts that for you. NCCL joins CUDA ranks,
gloo CPU ones. Nothing here runs at import.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ferlab.errors import FerlabError

logger = logging.getLogger("ferlab.training")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_env() -> Ranks:
    """The rank torchrun gave this process (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise FerlabError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)") from None


def init_process_group(ranks: Ranks, device: torch.device) -> None:
    """Join the other ranks (once): NCCL on CUDA, gloo otherwise."""
    if not ranks.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=ranks.rank, world_size=ranks.world_size)
    logger.info("rank %d of %d joined (%s)", ranks.rank, ranks.world_size, backend)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _reduce_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum of each rank's values (float64, so counts stay exact)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.cpu()]


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s picklable object on every rank (None in, None out when not distributed)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_reduce_device())
    return box[0]


def all_gather(obj: Any) -> list[Any]:
    if not active():
        return [obj]
    boxes: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(boxes, obj)
    return boxes


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def end_rank() -> None:
    """After a finished run: every rank leaves together, and a torchrun rank ends without
    interpreter teardown.

    DistributedDataParallel keeps gloo's process group and its worker threads alive after
    destroy_process_group. A worker thread that is still releasing the tensors of the last
    broadcast needs the GIL; if the interpreter is finalising by then, the thread is ended
    inside a C++ destructor and the rank aborts ("terminate called without an active
    exception", SIGABRT) after its run is complete, failing the launch (1 launch in 36 here;
    the core showed that stack). A finished rank has written all it owes and its output is
    flushed here, so os._exit skips the finalisation. The barrier keeps a quick rank from
    closing its sockets while another still reports.
    """
    if not ranks_from_env().distributed:
        return
    barrier()
    shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch(nproc: int, ferlab_args: list[str]) -> int:
    """Run `ferlab <ferlab_args>` in `nproc` processes via torch.distributed.run; its exit code."""
    if nproc < 1:
        raise FerlabError(f"--nproc {nproc}: give at least 1 process")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--no-python",
        sys.executable,
        "-c",
        "from ferlab.cli.main import app; app(prog_name='ferlab')",
        *ferlab_args,
    ]
    logger.info("launching: %s", " ".join(command))
    return subprocess.call(command)


KILL_AFTER_EPOCH = "FERLAB_KILL_AFTER_EPOCH"
"""Test hook: after this many epochs (checkpoint written) every rank exits at once, as if killed."""


def simulate_kill(epochs_done: int) -> None:
    if os.environ.get(KILL_AFTER_EPOCH) == str(epochs_done):
        sys.stdout.flush()
        os._exit(137)
