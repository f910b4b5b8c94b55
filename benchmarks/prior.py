"""What rebalancing by the training class prior does, at strengths from 0 (as trained) to 1 (uniform).

    python benchmarks/prior.py ferplus8 ferplus8-blend ferplus8-robust ferplus8-robust-40 --json docs/figures/prior.json
    python benchmarks/prior.py ferplus8-robust-40+ferplus8 ferplus8-robust-40+ferplus8-blend   # ensembles

For each model and strength (`predict --prior STRENGTH`): accuracy and macro-F1 on the whole
test split (FER+'s own class mix, 32 % neutral), and per-class recall with its mean, the
balanced accuracy (what a class-balanced test set would score, in expectation). The balanced
subsample of benchmarks/robustness.py estimates the same recalls from 15 faces a class; here
every test face counts, so a recall is uncertain by the rarer classes' counts only (FER+ test:
16 disgust, 86 fear and 15 contempt faces; the script prints the counts). fp32 ONNX Runtime,
as the model cards. `A+B` averages the models' probabilities, each rebalanced at the strength
(as benchmarks/robustness.py does).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.errors import run_script
from ferlab.evaluation.robustness import ScoredModel, per_class_recall

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped name, run folder or model.pt; A+B for an ensemble")
    parser.add_argument("--data", default=".data/ferplus", help="FER+ folder (its test split is scored)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    dataset = load_dataset(args.data, options=LoadOptions(size=48, channels=3)).split(args.split)
    classes = dataset.label_set.classes
    labels = dataset.labels
    counts = np.bincount(labels, minlength=len(classes))
    print(
        f"{len(labels)} {args.split} faces of {args.data}: " + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)),
        file=sys.stderr,
    )
    print("| model | prior strength | accuracy % | macro-F1 | balanced accuracy % | " + " | ".join(classes) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(classes))
    figures = []
    models = {reference: ScoredModel(reference, classes) for spec in args.models for reference in spec.split("+")}
    logits = {reference: model.logits(dataset.images) for reference, model in models.items()}
    for reference in args.models:
        members = reference.split("+")
        for strength in STRENGTHS:
            probabilities = [models[m].probabilities(logits[m], prior_strength=strength) for m in members]
            predicted = np.mean(probabilities, axis=0).argmax(1)
            recall = per_class_recall(labels, predicted, len(classes))
            row = {
                "model": reference,
                "strength": strength,
                "accuracy": float(100 * (predicted == labels).mean()),
                "macro_f1": float(f1_score(labels, predicted, labels=range(len(classes)), average="macro")),
                "balanced_accuracy": float(100 * recall.mean()),
                "recall": {c: float(100 * r) for c, r in zip(classes, recall)},
            }
            figures.append(row)
            print(
                f"| {reference} | {strength:g} | {row['accuracy']:.2f} | {row['macro_f1']:.3f} | "
                f"{row['balanced_accuracy']:.1f} | " + " | ".join(f"{100 * r:.0f}" for r in recall) + " |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"counts": dict(zip(classes, counts.tolist())), "rows": figures}, indent=1))
    return 0


if __name__ == "__main__":
    run_script(main)
