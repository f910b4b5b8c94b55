"""Finish a fine-tuned run at several `train.interpolate` shares without training it again.

    python scripts/interpolate_sweep.py runs/ferplus8-robust --shares 0.3 0.5 0.7

For each share the run's checkpoints are copied into `runs/<run>-interpolate<share>/`, its
config gets the share, and the copy is resumed: the trainer finds every epoch done, so it
only finishes (mixes the best fine-tuned weights with the starting ones, fits the
temperature, scores validation and test). Each copy is the run that `ferlab train CONFIG
--set train.interpolate=SHARE --name NAME` would make, without its training time. The table
gives validation and test accuracy per share: choose on validation, not on test.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from ferlab.errors import FerlabError, run_script
from ferlab.training.config import build_config, read_config_file
from ferlab.training.entry import resume

COPIED = ("history.json", "last.pt", "best.pt", "train.log", "summary.txt")


def finish_at(run_dir: Path, share: float) -> tuple[Path, dict]:
    values = read_config_file(run_dir / "config.yaml")
    name = f"{values.get('name', run_dir.name)}-interpolate{share:g}"
    values["name"] = name
    values.setdefault("train", {})["interpolate"] = share
    config = build_config(values)  # checks the share and that the run started from weights
    target = run_dir.parent / name
    if (target / "metrics.json").is_file():
        return target, json.loads((target / "metrics.json").read_text())
    target.mkdir(exist_ok=True)
    for file in COPIED:
        if (run_dir / file).is_file():
            shutil.copy2(run_dir / file, target / file)
    (target / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return resume(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run folder that fine-tuned from model.params.pretrained")
    parser.add_argument("--shares", type=float, nargs="+", required=True, help="shares of the fine-tuned weights")
    args = parser.parse_args()
    if not (args.run / "last.pt").is_file() or not (args.run / "metrics.json").is_file():
        raise FerlabError(f"{args.run}: not a finished run folder (needs last.pt and metrics.json)")
    rows = [finish_at(args.run, share) for share in args.shares]
    print("| run | share | val accuracy % | val macro-F1 | test accuracy % | test macro-F1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for share, (folder, metrics) in zip(args.shares, rows):
        val, test = metrics["val"], metrics.get("test", {})
        print(
            f"| {folder} | {share:g} | {100 * val['accuracy']:.2f} | {val['macro_f1']:.3f} | "
            f"{100 * test.get('accuracy', float('nan')):.2f} | {test.get('macro_f1', float('nan')):.3f} |"
        )
    return 0


if __name__ == "__main__":
    run_script(main)
