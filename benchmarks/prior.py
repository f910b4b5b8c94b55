"""What rebalancing by the training class prior does, at strengths from 0 (as trained) to 1 (uniform).

    python benchmarks/prior.py ferplus8 ferplus8-blend ferplus8-robust ferplus8-robust-40 --json docs/figures/prior.json
    python benchmarks/prior.py ferplus8-robust-40+ferplus8 ferplus8-robust-40+ferplus8-blend   # ensembles
    python benchmarks/prior.py fer2013-7 --data .data/fer2013 --json docs/figures/prior-fer2013-7.json
    python benchmarks/prior.py five --data .data/fer2013 --json docs/figures/prior-five.json

Data classes a model lacks are dropped, with their faces, as `ferlab evaluate` does (`five` on
FER2013: its five classes, 2,908 PrivateTest faces).

For each model and strength (`predict --prior STRENGTH`): accuracy and macro-F1 on the whole
test split (FER+'s own class mix, 32 % neutral), and per-class recall with its mean, the
balanced accuracy (what a class-balanced test set would score, in expectation). The balanced
subsample of benchmarks/robustness.py estimates the same recalls from 15 faces a class; here
every test face counts, so a recall is uncertain by the rarer classes' counts only (FER+ test:
16 disgust, 86 fear and 15 contempt faces; the script prints the counts). fp32 ONNX Runtime,
as the model cards. `A+B` averages the models' probabilities, each rebalanced at the strength
(as benchmarks/robustness.py does).

`--fit-offsets` asks whether eight free per-class offsets do better than one strength: it
fits an offset per class on the validation split's log-probabilities to maximise macro-F1
(coordinate ascent on a grid, validation accuracy kept at least as trained), then scores the
test split with them. Few faces (25 disgust, 16 contempt in FER+ Valid) fit eight numbers.

    python benchmarks/prior.py ferplus8-robust-40 --fit-offsets
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from ferlab.data.dataset import FaceDataset
from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.errors import run_script
from ferlab.evaluation.evaluator import align_labels
from ferlab.evaluation.robustness import ScoredModel, per_class_recall
from ferlab.inference.predictor import resolve_model
from ferlab.models.bundle import load_bundle

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped name, run folder or model.pt; A+B for an ensemble")
    parser.add_argument("--data", default=".data/ferplus", help="FER+ folder (its test split is scored)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--fit-offsets", action="store_true", help="per-class offsets fitted on the val split")
    args = parser.parse_args()

    if args.fit_offsets:
        return fit_offsets(args.models, args.data, args.split)
    dataset = load_dataset(args.data, options=LoadOptions(size=48, channels=3)).split(args.split)
    dataset = shared_classes(dataset, [m for spec in args.models for m in spec.split("+")])
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


def shared_classes(dataset: FaceDataset, references: list[str]) -> FaceDataset:
    """The faces of the classes every model predicts, so that each model is scored on its own classes."""
    for reference in references:
        dataset, _, notes = align_labels(dataset, load_bundle(resolve_model(reference)).record.labels)
        for note in notes:
            print(f"{reference}: {note}", file=sys.stderr)
    return dataset


def macro_f1(labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    return float(f1_score(labels, predicted, labels=range(classes), average="macro", zero_division=0))


def offsets_for_macro_f1(log_probabilities: np.ndarray, labels: np.ndarray, sweeps: int = 4) -> np.ndarray:
    """Per-class offsets (the first class fixed at 0) that maximise macro-F1 on these faces,
    never at the cost of their accuracy as trained."""
    classes = log_probabilities.shape[1]
    floor = float((log_probabilities.argmax(1) == labels).mean())
    offsets = np.zeros(classes)
    for _ in range(sweeps):
        for c in range(1, classes):
            best, best_value = macro_f1(labels, (log_probabilities + offsets).argmax(1), classes), offsets[c]
            for value in np.linspace(-2, 3, 51):
                trial = offsets.copy()
                trial[c] = value
                predicted = (log_probabilities + trial).argmax(1)
                score = macro_f1(labels, predicted, classes)
                if (predicted == labels).mean() >= floor and score > best + 1e-9:
                    best, best_value = score, value
            offsets[c] = best_value
    return offsets


def fit_offsets(models: list[str], data: str, split: str) -> int:
    dataset = load_dataset(data, options=LoadOptions(size=48, channels=3))
    val, test = dataset.split("val"), dataset.split(split)
    classes = dataset.label_set.classes
    print("| model | offsets | split | accuracy % | macro-F1 | " + " | ".join(classes) + " |")
    print("|---|---|---|---:|---:|" + "---:|" * len(classes))
    for reference in models:
        model = ScoredModel(reference, classes)
        scored = {
            name: np.log(model.probabilities(model.logits(part.images))) for name, part in (("val", val), (split, test))
        }
        fitted = offsets_for_macro_f1(scored["val"], val.labels)
        for name, part in (("val", val), (split, test)):
            for label, offsets in (("none", np.zeros(len(classes))), ("fitted on val", fitted)):
                predicted = (scored[name] + offsets).argmax(1)
                recall = per_class_recall(part.labels, predicted, len(classes))
                print(
                    f"| {reference} | {label} | {name} | {100 * (predicted == part.labels).mean():.2f} | "
                    f"{macro_f1(part.labels, predicted, len(classes)):.3f} | "
                    + " | ".join(f"{100 * r:.0f}" for r in recall)
                    + " |"
                )
        print(f"offsets fitted on val ({reference}): " + ", ".join(f"{c} {o:+.1f}" for c, o in zip(classes, fitted)))
    return 0


if __name__ == "__main__":
    run_script(main)
