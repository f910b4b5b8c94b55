"""Checkpoint contents that are not the model: the RNG states, as tensors and plain values, so a
checkpoint loads with `weights_only=True` and a resumed run draws what an uninterrupted one would."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from ferlab.errors import FerlabError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


_OLD_NUMPY_RNG_TYPES = (
    np._core.multiarray._reconstruct,  # type: ignore[attr-defined]
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,
)
"""The exact NumPy types in checkpoints written before RNG states were stored as tensors."""


def rng_states() -> dict[str, Any]:
    """The torch, NumPy and Python RNG states as tensors and plain values (no pickled objects)."""
    key, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, python_state, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": str(key),
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "state": [int(v) for v in python_state], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from its generator
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(saved: dict[str, Any]) -> None:
    """Restore what `rng_states` saved (or the NumPy tuple of an older checkpoint)."""
    torch.set_rng_state(saved["torch"])
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["cuda"])
    numpy_state, python_state = saved["numpy"], saved["python"]
    if isinstance(numpy_state, dict):
        numpy_state = (
            numpy_state["key"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    np.random.set_state(numpy_state)
    if isinstance(python_state, dict):
        python_state = (python_state["version"], tuple(python_state["state"]), python_state["gauss_next"])
    random.setstate(python_state)


def restore_rng(saved: dict[str, Any], rank: int, processes: int, reseed: int) -> str:
    """Put back the RNG states of `saved` (last.pt) for this rank; what happened, for train.log.

    With the same number of processes every rank gets its own states back, so the run goes on
    exactly as an uninterrupted one. With another number the weights, optimiser and batch order
    still continue exactly; only dropout draws start afresh (seeded by `reseed` and the rank).
    """
    written_by = int(saved.get("world_size", 1))
    set_rng_states(saved["rng_ranks"][rank] if written_by == processes > 1 else saved["rng"])
    if written_by == processes:
        return f"the same number as before ({written_by})"
    torch.manual_seed(reseed + rank)
    return f"a different number: the checkpoint was written by {written_by}, dropout draws restart"


def check_inputs(saved_digests: dict[str, str], digests: dict[str, str], config: Any, run_dir: Any) -> None:
    """The files a run's targets or selection depend on (teacher, clean validation list) must be
    the ones it started with: resuming on other data would train or select on other data."""
    for key in sorted(set(saved_digests) | set(digests)):
        if saved_digests.get(key) != digests.get(key):
            raise FerlabError(
                f"{run_dir}: {key} {config.flat()[key]} is not the file this run started with; "
                "resuming would train or select on other data (put the original back, or start a new run)"
            )


def checkpoint_payload(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    state: dict[str, Any],
    rngs: list[dict[str, Any]],
    input_digests: dict[str, str],
) -> dict[str, Any]:
    """last.pt's contents: tensors and plain values only (it loads with weights_only=True).
    `rngs` holds every rank's RNG states; with one process only `rng` is written, as before."""
    saved = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "state": state,
        "rng": rngs[0],
        "input_digests": input_digests,
    }
    if len(rngs) > 1:
        saved.update(world_size=len(rngs), rng_ranks=rngs)
    if scaler is not None:
        saved["scaler"] = scaler.state_dict()
    return saved
