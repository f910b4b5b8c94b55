"""The training engine: one loop for every recipe of both reports, resumable at any epoch.

Every epoch ends with an atomic checkpoint (weights, optimiser, scheduler, RNG states, early
stopping, history); batch order, augmentation and mixup draw from generators seeded by (seed,
phase, epoch), so a resumed run ends with the same weights as an uninterrupted one.

Each job has its module: `data` (what is trained on), `teacher` (distillation targets),
`loop` (optimiser, epoch, evaluation), `finish` (temperature, metrics, model.pt), `run_folder`
(what a run folder holds, who writes it), `device` and `distributed` (where it runs); `entry`
(`train`, `resume`) starts a `Trainer` and sits above it. A
`Trainer` only stores its arguments; `prepare()` (called by `fit()`) applies the process
settings (threads, seeds), joins the other ranks, loads the data and builds the model.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ferlab.errors import FerlabError, writes_to
from ferlab.models.base import FerModel, summary
from ferlab.models.bundle import atomic_save, load_torch_file, remove_stale_temporaries
from ferlab.models.registry import add_second_head, create_model
from ferlab.training import checkpoint, distributed, loop
from ferlab.training import data as prep
from ferlab.training.checkpoint import _OLD_NUMPY_RNG_TYPES, rng_states
from ferlab.training.config import ExperimentConfig
from ferlab.training.data import SplitTensors, TrainingData, prepare_data
from ferlab.training.device import make_runtime, place
from ferlab.training.finish import finish_run
from ferlab.training.loop import EpochInputs, Phase, TrainState, phases_of
from ferlab.training.run_folder import RunFolder
from ferlab.training.teacher import teacher_probabilities

logger = logging.getLogger("ferlab.training")


class TrainingInterrupted(FerlabError):
    """Ctrl-C during training: the last finished epoch is saved and can be resumed."""


class Trainer:
    """Trains one experiment into its run folder, from scratch or from its last checkpoint."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, device: str | None = None) -> None:
        self.config, self.run_dir, self.device = config, run_dir, device or config.train.device
        self.ranks = distributed.ranks_from_env()
        self.folder = RunFolder(run_dir, writer=self.ranks.rank == 0)
        self.phases, self.state = phases_of(config), TrainState()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self._pending_optimizer: tuple[Any, Any, Any] | None = None
        self.data: TrainingData | None = None

    def prepare(self) -> Trainer:
        """Set threads and seeds, join the other ranks, load the data, build the model, run the teacher."""
        if self.data is not None:
            return self
        config, train = self.config, self.config.train
        torch.set_num_threads(train.threads or os.cpu_count() or 1)
        checkpoint.seed_everything(config.seed)
        self.runtime = make_runtime(self.device, train, self.ranks)
        params = config.model.params
        try:  # before any data is loaded: a bad model option fails in a second, not after the decoding
            probe = create_model(config.model.name, 2, **{k: v for k, v in params.items() if k != "pretrained"})
        except (TypeError, ValueError, RuntimeError) as exc:
            raise FerlabError(
                f"config model.params {params} do not build a {config.model.name} "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
            ) from None
        data = prepare_data(config, probe.input_size, probe.in_channels)
        model: FerModel = create_model(config.model.name, len(data.label_set), **params)
        if data.second_label_set is not None:
            add_second_head(model, len(data.second_label_set))
        taught = None
        if train.teacher:
            taught, digest = teacher_probabilities(config, data.label_set, model, data.train.images, self.runtime)
            data.input_digests["train.teacher"] = digest
        self.batch_size = prep.global_batch(len(data.train.labels), train.batch_size, self.runtime.world_size)
        self.model, self.teacher_probabilities = place(model, data, taught, self.runtime, train)
        self.network: torch.nn.Module = self.model  # DistributedDataParallel(model) with several ranks
        self.scaler = self.runtime.grad_scaler()
        self.data = data
        return self

    @property
    def prepared(self) -> TrainingData:
        if self.data is None:
            raise FerlabError("call Trainer.prepare() (or fit()) first: the constructor loads nothing")
        return self.data

    train_data = property(lambda self: self.prepared.train)
    val_data = property(lambda self: self.prepared.val)
    dataset = property(lambda self: self.prepared.dataset)
    label_set = property(lambda self: self.prepared.label_set)
    input_digests = property(lambda self: self.prepared.input_digests)
    checkpoint_path = property(lambda self: self.folder.last)
    best_path = property(lambda self: self.folder.best)

    def write_run_header(self) -> None:
        self.prepare()
        self.folder.write_header(self.config, summary(self.model), self.dataset.class_counts())

    def _begin_phase(self, phase: Phase) -> None:
        loop.unfreeze_for(self.model, phase, self.config)
        if self.runtime.world_size > 1:  # wrapped per phase: DDP fixes the trainable parameters
            ids = [self.runtime.device] if self.runtime.cuda else None
            self.network = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer, self.scheduler = loop.build_optimizer(self.model, phase, self.config)

    def train_epoch(self, epoch_seed: tuple[int, ...]) -> dict[str, float]:
        assert self.optimizer is not None
        reduce = distributed.all_reduce_sum if self.runtime.world_size > 1 else None
        inputs = EpochInputs(self.config, self.train_data, self.batch_size, self.runtime, self.prepared.class_weights)
        inputs.teacher_probabilities, inputs.scaler, inputs.all_reduce = self.teacher_probabilities, self.scaler, reduce
        return loop.train_one_epoch(self.model, self.network, self.optimizer, inputs, epoch_seed)

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        return loop.predict_logits(self.model, images, self.runtime)

    def evaluate(self, data: SplitTensors, logits: torch.Tensor | None = None) -> dict[str, float]:
        logits = self.predict_logits(data.images) if logits is None else logits
        return loop.scores(logits, data.labels, len(self.label_set))

    def fit(self) -> dict[str, Any]:
        """Run every phase to its end or early stop, then write the final artefacts."""
        self.prepare()
        if self.folder.writer:
            remove_stale_temporaries(self.run_dir)  # left by a kill during a save
        with writes_to(self.run_dir):  # a full disk mid-run: one line; last.pt still holds the last whole epoch
            try:
                self._fit_phases()
            except KeyboardInterrupt:
                if not self.checkpoint_path.is_file():
                    raise TrainingInterrupted(
                        "interrupted before the first epoch finished, so there is nothing to resume; "
                        "start the run again with the same command"
                    ) from None
                raise TrainingInterrupted(
                    f"interrupted; the last finished epoch is saved — resume with: ferlab train --resume {self.run_dir}"
                ) from None
            return self.finish()

    def _fit_phases(self) -> None:
        pending, state = self._pending_optimizer, self.state
        while state.phase_index < len(self.phases):
            phase = self.phases[state.phase_index]
            resuming_phase = pending is not None and state.epoch_in_phase > 0
            if state.phase_index > 0 and not resuming_phase:
                self._restore_best()  # phase 2 fine-tunes the best phase-1 weights
            self._begin_phase(phase)
            if resuming_phase:
                assert self.optimizer is not None and pending is not None
                self.optimizer.load_state_dict(pending[0])
                for part, saved in ((self.scheduler, pending[1]), (self.scaler, pending[2])):
                    if part is not None and saved is not None:
                        part.load_state_dict(saved)
            pending = None
            while state.epoch_in_phase < phase.epochs and state.bad_epochs < phase.patience:
                self._run_epoch(phase)
            state.phase_index, state.epoch_in_phase, state.bad_epochs = state.phase_index + 1, 0, 0

    def _run_epoch(self, phase: Phase) -> None:
        assert self.optimizer is not None
        epoch, started, state = len(self.state.history), time.perf_counter(), self.state
        lr = self.optimizer.param_groups[0]["lr"]
        record: dict[str, Any] = {"epoch": epoch + 1, "phase": phase.name, "lr": lr}
        record.update(self.train_epoch((self.config.seed, state.phase_index, state.epoch_in_phase)))
        val = self.evaluate(self.val_data) if self.runtime.is_main else None  # once, on rank 0, then agreed
        record.update({f"val_{k}": v for k, v in distributed.broadcast(val).items()})
        record["seconds"] = time.perf_counter() - started
        monitored = record[self.config.train.monitor]
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored)
        elif self.scheduler is not None:
            self.scheduler.step()
        if loop.improved(monitored, state.best_metric, self.config.train.monitor):
            state.best_metric, state.best_epoch, state.bad_epochs = monitored, epoch + 1, 0
            if self.folder.writer:
                atomic_save(self.model.state_dict(), self.best_path)
        else:
            state.bad_epochs += 1
        state.history.append(record)
        state.epoch_in_phase += 1
        state.seconds += record["seconds"]
        self.save_checkpoint()
        self.folder.write_history(state.history)
        line = loop.epoch_line(record, state.best_epoch == epoch + 1)
        self.folder.log(line)
        if self.runtime.is_main:
            logger.info(line)
            tqdm.write(line)
        distributed.barrier()  # best.pt and last.pt are on disk before any rank reads them
        distributed.simulate_kill(len(state.history))  # FERLAB_KILL_AFTER_EPOCH: tests of resuming

    def save_checkpoint(self) -> None:
        """last.pt: tensors and plain Python values only, so it loads with weights_only=True."""
        assert self.optimizer is not None
        rngs = distributed.all_gather(rng_states())  # every rank's dropout stream, for an exact resume
        if not self.folder.writer:
            return
        parts = (self.model, self.optimizer, self.scheduler, self.scaler)
        saved = checkpoint.checkpoint_payload(*parts, self.state.__dict__, rngs, self.input_digests)
        atomic_save(saved, self.checkpoint_path)

    def restore_checkpoint(self) -> None:
        """Load last.pt (weights_only: data, never code): weights and bookkeeping now, the optimiser
        state when its phase begins. A damaged or foreign file is a one-line FerlabError."""
        self.prepare()
        if not self.checkpoint_path.is_file():
            raise FerlabError(f"{self.run_dir}: no checkpoint (last.pt) to resume from")
        saved = load_torch_file(self.checkpoint_path, "ferlab checkpoint", allow=_OLD_NUMPY_RNG_TYPES)
        try:
            self._restore(saved)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            raise FerlabError(
                f"{self.checkpoint_path}: not a checkpoint of this run ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:160]}); start a new run or put the original last.pt back"
            ) from None

    def _restore(self, saved: Any) -> None:
        checkpoint.check_inputs(saved.get("input_digests", {}), self.input_digests, self.config, self.run_dir)
        self.model.load_state_dict(saved["model"])
        self.state = TrainState(**saved["state"])
        self._pending_optimizer = (saved["optimizer"], saved["scheduler"], saved.get("scaler"))
        runtime, done = self.runtime, len(self.state.history)
        how = checkpoint.restore_rng(saved, runtime.rank, runtime.world_size, self.config.seed + 7919 * done)
        if runtime.world_size > 1 or int(saved.get("world_size", 1)) > 1:
            self.folder.log(f"# resumed after epoch {done} with {runtime.world_size} process(es), {how}")

    def _restore_best(self) -> None:
        if self.best_path.is_file():
            self.model.load_state_dict(load_torch_file(self.best_path, "ferlab checkpoint"))

    def finish(self) -> dict[str, Any]:
        """Restore the best weights, fit the calibration temperature on validation data, and write
        metrics, curves and the model bundle: on rank 0, whose metrics the other ranks receive."""
        self._restore_best()
        main = self.runtime.is_main
        args = (self.model, self.config, self.prepared, self.state, self.runtime, self.folder)
        return distributed.broadcast(finish_run(*args) if main else None)
