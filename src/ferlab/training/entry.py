"""Where training starts: `train` a config into its run folder, or `resume` an interrupted run.

These sit above `Trainer` (ferlab.training.trainer), which knows nothing of them: the run
folder policy (ferlab.training.run_folder) decides *whether* to train, this module starts
the trainer. `ferlab.train` and `ferlab train` both call `train` here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ferlab.errors import FerlabError
from ferlab.training.config import ExperimentConfig, build_config, load_config, read_config_file
from ferlab.training.distributed import ranks_from_env
from ferlab.training.run_folder import existing_run
from ferlab.training.trainer import Trainer

ConfigSource = ExperimentConfig | str | Path | dict[str, Any]
"""An experiment: a config already built, a YAML/TOML file, or the same keys as a dict."""


def as_config(config: ConfigSource, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The experiment a `ConfigSource` and `key=value` overrides describe (checked, with defaults)."""
    if isinstance(config, ExperimentConfig):
        return build_config(config.to_dict(), list(overrides)) if overrides else config
    if isinstance(config, dict):
        return build_config(dict(config), list(overrides))
    return load_config(Path(config), list(overrides))


def train(
    config: ConfigSource,
    runs_dir: str | Path = Path("runs"),
    device: str | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Path, dict[str, Any]]:
    """Train the run `runs_dir/<config name>` and return its folder and metrics, never
    overwriting another experiment.

    A run folder left by the same config is picked up where it stopped: a finished run is
    returned as is and an interrupted one resumes, so a sweep over many configs can simply be
    started again in the next session. `device` overrides `train.device`; `overrides` are
    `key=value` strings as `--set` takes them (`train.lr=0.01`).
    """
    config = as_config(config, overrides)
    run_dir = Path(runs_dir) / config.name
    status = existing_run(config, run_dir)
    if status == "finished":
        if ranks_from_env().rank == 0:
            tqdm.write(f"{run_dir}: already trained with this config, not trained again")
        return run_dir, json.loads((run_dir / "metrics.json").read_text())
    if status == "resume":
        return resume(run_dir, device)
    trainer = Trainer(config, run_dir, device)
    trainer.write_run_header()
    return run_dir, trainer.fit()


def resume(run_dir: str | Path, device: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue a killed or interrupted run from its last finished epoch, with any number of processes."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FerlabError(f"{run_dir}: not a run folder (no config.yaml)")
    trainer = Trainer(build_config(read_config_file(config_path)), run_dir, device)
    trainer.restore_checkpoint()
    return run_dir, trainer.fit()
