"""Run-folder policy: what a run folder holds, who writes it, and what training the same name again does.

It decides; ferlab.training.entry acts (starts or resumes a `Trainer`), so this module never imports the trainer.

`runs/<name>/` holds config.yaml, summary.txt, train.log, history.json, last.pt, best.pt,
curves.png, model.pt and metrics.json (written last: the sign of a finished run). With
several processes only rank 0 writes; the others hold a `RunFolder` whose writes do nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ferlab.errors import FerlabError
from ferlab.training.config import ExperimentConfig, build_config, read_config_file

EXECUTION_KEYS = ("device", "sync_bn", "threads")
"""train.* keys that say where and how fast a run trains, not what it learns: changing them does
not make another experiment (a CPU run may be resumed on a GPU)."""


@dataclass
class RunFolder:
    path: Path
    writer: bool = True
    """False on every rank but 0 under DistributedDataParallel."""

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    def log(self, line: str) -> None:
        if self.writer:
            with (self.path / "train.log").open("a") as handle:
                handle.write(line + "\n")

    def write_header(self, config: ExperimentConfig, summary_text: str, class_counts: dict[str, Any]) -> None:
        if not self.writer:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        (self.path / "summary.txt").write_text(summary_text + "\n\nData: " + json.dumps(class_counts) + "\n")

    def write_history(self, history: list[dict[str, Any]]) -> None:
        if self.writer:
            (self.path / "history.json").write_text(json.dumps(history, indent=1))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        if self.writer:
            self.metrics.write_text(json.dumps(metrics, indent=1))


def recipe(config: ExperimentConfig) -> dict[str, Any]:
    """The config without its execution keys: what makes two runs the same experiment."""
    values = config.to_dict()
    values["train"] = {k: v for k, v in values["train"].items() if k not in EXECUTION_KEYS}
    return values


def existing_run(config: ExperimentConfig, run_dir: Path) -> Literal["new", "resume", "finished"]:
    """What `train` does with `run_dir`: start it, resume it, or report it as finished.

    A folder that holds another experiment (another config, execution keys aside) is refused,
    and a finished one stays finished after its checkpoints are deleted to save disk.
    """
    finished = (run_dir / "metrics.json").is_file()
    if not finished and not (run_dir / "last.pt").exists():
        return "new"
    saved = build_config(read_config_file(run_dir / "config.yaml")) if (run_dir / "config.yaml").is_file() else None
    if saved is None or recipe(saved) != recipe(config):
        raise FerlabError(
            f"{run_dir} already has a run with another config: resume it with --resume {run_dir} or pick another --name"
        )
    return "finished" if finished else "resume"
