"""Run folders after training: learning curves and the experiment table across runs."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any

from ferlab.data.markdown import markdown_table
from ferlab.errors import FerlabError
from ferlab.training.config import build_config, read_config_file


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Accuracy and loss, train vs validation, per epoch (phase changes marked).

    Drawn on a `matplotlib.figure.Figure` of its own: no pyplot state and no backend change, so
    training inside a notebook leaves the notebook's plots alone."""
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 3.8))
    acc_ax, loss_ax = fig.subplots(1, 2)
    for ax, key, title in ((acc_ax, "accuracy", "Accuracy"), (loss_ax, "loss", "Loss")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], label="train", marker=".")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], label="validation", marker=".")
        for previous, current in itertools.pairwise(history):
            if previous["phase"] != current["phase"]:
                ax.axvline(current["epoch"] - 0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _read_run(run_dir: Path) -> dict[str, Any]:
    config_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.json"
    if not config_path.is_file():
        raise FerlabError(f"{run_dir}: not a run folder (no config.yaml)")
    config = build_config(read_config_file(config_path)).flat()
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if not metrics and (run_dir / "history.json").is_file():
        history = json.loads((run_dir / "history.json").read_text())
        metrics = {"epochs_run": len(history), "status": "unfinished"}
    return {"run": run_dir.name, "config": config, "metrics": metrics}


def compare_runs(run_dirs: list[Path]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the config keys that differ between runs, then the results."""
    if not run_dirs:
        raise FerlabError("no runs to compare")
    runs = [_read_run(d) for d in run_dirs]
    keys = sorted({k for r in runs for k in r["config"]})
    differing = [
        k for k in keys if k != "name" and len({json.dumps(r["config"].get(k), sort_keys=True) for r in runs}) > 1
    ]
    header = ["run", *differing, "best epoch", "val acc", "val macro-F1", "test acc", "test macro-F1", "train min"]
    rows = []
    for r in runs:
        m = r["metrics"]
        val, test = m.get("val", {}), m.get("test", {})
        pct = lambda d, k: f"{100 * d[k]:.2f}" if k in d else "-"  # noqa: E731
        rows.append(
            [
                r["run"],
                *(str(r["config"].get(k)) for k in differing),
                str(m.get("best_epoch", "-")),
                pct(val, "accuracy"),
                pct(val, "macro_f1"),
                pct(test, "accuracy"),
                pct(test, "macro_f1"),
                f"{m['train_seconds'] / 60:.1f}" if "train_seconds" in m else m.get("status", "-"),
            ]
        )
    return header, rows


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    return markdown_table(header, rows) + "\n"


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
