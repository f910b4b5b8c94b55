"""Accuracy and macro-F1 of models on FER+ test under corruptions, at three severities each.

    python benchmarks/robustness.py ferplus8 runs/lite0-ferplus96 --data .data/ferplus
    python benchmarks/robustness.py ferplus8 --limit 600          # a quick look

MODEL is a shipped name, a run folder or a model.pt; `A+B` averages the calibrated
probabilities of several models (an ensemble). `--prior uniform` also scores every model
with its predictions rebalanced by its training class prior (`ferlab.models.prior`).
Per-class recall is reported on a class-balanced subsample of the uncorrupted test split
(as many faces per class as the rarest class has), where accuracy alone hides the rare
classes. `--json FILE` keeps every figure; `--markdown` prints tables for docs/robustness.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.errors import FerlabError
from ferlab.evaluation.calibration import expected_calibration_error, softmax
from ferlab.evaluation.robustness import (
    CORRUPTIONS, SEVERITIES, Score, balanced_subsample, corrupt, model_input, per_class_recall,
)
from ferlab.inference.engine import Classifier
from ferlab.inference.predictor import resolve_model
from ferlab.models.bundle import ModelBundle, load_bundle
from ferlab.models.prior import class_prior, rebalance


class Member:
    """One model, its outputs reordered to the data's classes."""

    def __init__(self, reference: str, data_classes: tuple[str, ...], backend: str) -> None:
        self.bundle: ModelBundle = load_bundle(resolve_model(reference))
        model_classes = self.bundle.label_set.classes
        missing = [c for c in data_classes if c not in model_classes]
        if missing:
            raise FerlabError(f"{reference} does not predict {', '.join(missing)}, which the data has")
        self.outputs = [model_classes.index(c) for c in data_classes]
        self.classifier = Classifier(self.bundle, backend)  # type: ignore[arg-type]

    def probabilities(self, rgb_faces: np.ndarray, uniform_prior: bool) -> np.ndarray:
        spec = self.bundle.spec
        logits = self.classifier.logits(model_input(rgb_faces, spec.input_size, spec.in_channels))
        probabilities = softmax(logits, self.bundle.temperature)
        if uniform_prior:
            probabilities = rebalance(probabilities, class_prior(self.bundle.info, spec.num_classes))
        chosen = probabilities[:, self.outputs]
        return chosen / chosen.sum(axis=1, keepdims=True)


def score_all(members: list[Member], faces: np.ndarray, labels: np.ndarray, classes: int,
              uniform_prior: bool) -> tuple[Score, float, np.ndarray]:
    probabilities = np.mean([m.probabilities(faces, uniform_prior) for m in members], axis=0)
    predicted = probabilities.argmax(1)
    return Score.of(labels, predicted, classes), expected_calibration_error(probabilities, labels), predicted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped name, run folder or model.pt; A+B for an ensemble")
    parser.add_argument("--data", default=".data/ferplus", help="FER+ folder (FER2013Test is scored)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="score a stratified subsample of this many faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"))
    parser.add_argument("--prior", choices=("train", "uniform", "both"), default="train")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()

    dataset = load_dataset(args.data, options=LoadOptions(size=48, channels=3)).split(args.split)
    faces, labels, classes = dataset.images, dataset.labels, dataset.label_set.classes
    if args.limit and args.limit < len(labels):
        rng = np.random.default_rng(args.seed)
        keep = np.sort(rng.choice(len(labels), args.limit, replace=False))
        faces, labels = faces[keep], labels[keep]
    balanced = balanced_subsample(dataset.labels, args.seed)
    conditions = [(name, s) for name in CORRUPTIONS for s in SEVERITIES]
    print(f"{len(labels)} {args.split} faces of {args.data}; {len(conditions)} corrupted conditions; "
          f"balanced subsample {len(balanced)} faces ({len(balanced) // len(classes)} per class)", file=sys.stderr)

    priors = {"train": [False], "uniform": [True], "both": [False, True]}[args.prior]
    scorers = []
    for spec in args.models:
        members = [Member(reference, classes, args.backend) for reference in spec.split("+")]
        for uniform in priors:
            scorers.append((spec + (" (uniform prior)" if uniform else ""), members, uniform))

    results: dict[str, dict] = {}
    for name, members, uniform in scorers:
        started = time.perf_counter()
        clean, ece, _ = score_all(members, faces, labels, len(classes), uniform)
        _, _, balanced_predicted = score_all(members, dataset.images[balanced], dataset.labels[balanced],
                                             len(classes), uniform)
        recall = per_class_recall(dataset.labels[balanced], balanced_predicted, len(classes))
        corrupted: dict[str, dict] = {}
        for corruption, severity in conditions:
            score, c_ece, _ = score_all(members, corrupt(faces, corruption, severity, args.seed), labels,
                                        len(classes), uniform)
            corrupted[f"{corruption}/{severity}"] = {**asdict(score), "ece": c_ece}
        mean_accuracy = float(np.mean([v["accuracy"] for v in corrupted.values()]))
        mean_f1 = float(np.mean([v["macro_f1"] for v in corrupted.values()]))
        results[name] = {
            "clean": {**asdict(clean), "ece": ece}, "corrupted": corrupted,
            "corruption_mean": {"accuracy": mean_accuracy, "macro_f1": mean_f1,
                                "ece": float(np.mean([v["ece"] for v in corrupted.values()]))},
            "balanced_recall": dict(zip(classes, map(float, recall))),
            "balanced_accuracy": float(recall.mean()),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{name}: clean {100 * clean.accuracy:.2f}% (macro-F1 {clean.macro_f1:.3f}), corruption mean "
              f"{100 * mean_accuracy:.2f}% (macro-F1 {mean_f1:.3f}), {results[name]['seconds']} s", file=sys.stderr)

    print_tables(results, classes, markdown=args.markdown)
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "split": args.split, "faces": int(len(labels)),
                                         "seed": args.seed, "results": results}, indent=1))
    return 0


def print_tables(results: dict[str, dict], classes: tuple[str, ...], markdown: bool) -> None:
    names = list(results)
    sep = " | " if markdown else "  "

    def row(cells: list[str]) -> str:
        return ("| " + sep.join(cells) + " |") if markdown else sep.join(f"{c:>22}" for c in cells)

    print(row(["corruption (acc % / macro-F1)"] + names))
    if markdown:
        print("|" + "---|" + "---:|" * len(names))
    print(row(["none"] + [f"{100 * results[n]['clean']['accuracy']:.2f} / {results[n]['clean']['macro_f1']:.3f}"
                          for n in names]))
    for corruption in CORRUPTIONS:
        cells = []
        for n in names:
            values = [results[n]["corrupted"][f"{corruption}/{s}"] for s in SEVERITIES]
            cells.append("  ".join(f"{100 * v['accuracy']:.1f}" for v in values)
                         + f" / {np.mean([v['macro_f1'] for v in values]):.3f}")
        print(row([f"{corruption} (s1 s2 s3)"] + cells))
    print(row(["mean of all corrupted"] + [
        f"{100 * results[n]['corruption_mean']['accuracy']:.2f} / {results[n]['corruption_mean']['macro_f1']:.3f}"
        for n in names]))
    print(row(["ECE clean / corrupted"] + [
        f"{results[n]['clean']['ece']:.3f} / {results[n]['corruption_mean']['ece']:.3f}" for n in names]))
    print()
    print(row(["recall, balanced subsample"] + names))
    if markdown:
        print("|" + "---|" + "---:|" * len(names))
    for c in classes:
        print(row([c] + [f"{100 * results[n]['balanced_recall'][c]:.1f}" for n in names]))
    print(row(["mean (balanced accuracy)"] + [f"{100 * results[n]['balanced_accuracy']:.1f}" for n in names]))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
