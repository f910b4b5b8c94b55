"""Accuracy and macro-F1 of models on FER+ test under corruptions, at three severities each.

    python benchmarks/robustness.py ferplus8 runs/lite0-ferplus96 --data .data/ferplus
    python benchmarks/robustness.py ferplus8 --limit 600          # a quick look

MODEL is a shipped name, a run folder or a model.pt; `A+B` averages the calibrated
probabilities of several models (an ensemble). `--prior uniform` also scores every model
with its predictions rebalanced by its training class prior (`ferlab.models.prior`).
Per-class recall is reported on a class-balanced subsample of the uncorrupted test split
(as many faces per class as the rarest class has), where accuracy alone hides the rare
classes. Each model is scored as it is served (its `train.tta`); `--tta none` or `--tta flip`
(each face and its mirror image, averaged) scores them all one way.
`--json FILE` keeps every figure; `--markdown` prints tables for docs/robustness.md.
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
from ferlab.errors import run_script
from ferlab.evaluation.robustness import (
    CORRUPTIONS,
    SEVERITIES,
    Score,
    ScoredModel,
    balanced_subsample,
    corrupt,
    per_class_recall,
)
from ferlab.models.calibration import expected_calibration_error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped name, run folder or model.pt; A+B for an ensemble")
    parser.add_argument("--data", default=".data/ferplus", help="FER+ folder (FER2013Test is scored)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="score a random subsample of this many faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"))
    parser.add_argument(
        "--tta",
        choices=("auto", "none", "flip", "tencrop"),
        default="auto",
        help="test-time augmentation for every model (auto: each as it is served)",
    )
    parser.add_argument("--prior", choices=("train", "uniform", "both"), default="train")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()

    dataset = load_dataset(args.data, options=LoadOptions(size=48, channels=3)).split(args.split)
    classes = dataset.label_set.classes
    scored = np.arange(len(dataset.labels))
    if args.limit and args.limit < len(scored):
        scored = np.sort(np.random.default_rng(args.seed).choice(len(scored), args.limit, replace=False))
    faces, labels = dataset.images[scored], dataset.labels[scored]
    balanced = balanced_subsample(dataset.labels, args.seed)
    conditions = [("none", 0)] + [(name, s) for name in CORRUPTIONS for s in SEVERITIES]
    print(
        f"{len(labels)} {args.split} faces of {args.data}; {len(conditions) - 1} corrupted conditions; "
        f"balanced subsample {len(balanced)} faces ({len(balanced) // len(classes)} per class)",
        file=sys.stderr,
    )

    models = {
        reference: ScoredModel(reference, classes, args.backend, None if args.tta == "auto" else args.tta)
        for spec in args.models
        for reference in spec.split("+")
    }
    variants = [
        (spec + (" (uniform prior)" if uniform else ""), spec.split("+"), uniform)
        for spec in args.models
        for uniform in {"train": [False], "uniform": [True], "both": [False, True]}[args.prior]
    ]
    results: dict[str, dict] = {name: {"corrupted": {}} for name, _, _ in variants}
    started = time.perf_counter()
    for corruption, severity in conditions:
        images = faces if corruption == "none" else corrupt(faces, corruption, severity, args.seed)
        logits = {reference: model.logits(images) for reference, model in models.items()}
        if corruption == "none":
            balanced_logits = {reference: model.logits(dataset.images[balanced]) for reference, model in models.items()}
        for name, members, uniform in variants:
            probabilities = np.mean(
                [models[m].probabilities(logits[m], prior_strength=float(uniform)) for m in members], axis=0
            )
            entry = {
                **asdict(Score.of(labels, probabilities.argmax(1), len(classes))),
                "ece": expected_calibration_error(probabilities, labels),
            }
            if corruption == "none":
                results[name]["clean"] = entry
                balanced_probabilities = np.mean(
                    [models[m].probabilities(balanced_logits[m], prior_strength=float(uniform)) for m in members],
                    axis=0,
                )
                recall = per_class_recall(dataset.labels[balanced], balanced_probabilities.argmax(1), len(classes))
                results[name]["balanced_recall"] = dict(zip(classes, map(float, recall)))
                results[name]["balanced_accuracy"] = float(recall.mean())
            else:
                results[name]["corrupted"][f"{corruption}/{severity}"] = entry
        print(f"{corruption}/{severity} done, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    for result in results.values():
        values = result["corrupted"].values()
        result["corruption_mean"] = {
            key: float(np.mean([v[key] for v in values])) for key in ("accuracy", "macro_f1", "ece")
        }

    print_tables(results, classes, markdown=args.markdown)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "data": args.data,
                    "split": args.split,
                    "faces": len(labels),
                    "seed": args.seed,
                    "tta": {reference: model.tta for reference, model in models.items()},
                    "results": results,
                },
                indent=1,
            )
        )
    return 0


def print_tables(results: dict[str, dict], classes: tuple[str, ...], markdown: bool) -> None:
    names = list(results)
    sep = " | " if markdown else "  "

    def row(cells: list[str]) -> str:
        return ("| " + sep.join(cells) + " |") if markdown else sep.join(f"{c:>22}" for c in cells)

    print(row(["corruption (acc % / macro-F1)"] + names))
    if markdown:
        print("|" + "---|" + "---:|" * len(names))
    print(
        row(
            ["none"]
            + [f"{100 * results[n]['clean']['accuracy']:.2f} / {results[n]['clean']['macro_f1']:.3f}" for n in names]
        )
    )
    for corruption in CORRUPTIONS:
        cells = []
        for n in names:
            values = [results[n]["corrupted"][f"{corruption}/{s}"] for s in SEVERITIES]
            cells.append(
                "  ".join(f"{100 * v['accuracy']:.1f}" for v in values)
                + f" / {np.mean([v['macro_f1'] for v in values]):.3f}"
            )
        print(row([f"{corruption} (s1 s2 s3)"] + cells))
    print(
        row(
            ["mean of all corrupted"]
            + [
                f"{100 * mean['accuracy']:.2f} / {mean['macro_f1']:.3f}"
                for mean in (results[n]["corruption_mean"] for n in names)
            ]
        )
    )
    print(
        row(
            ["ECE clean / corrupted"]
            + [f"{results[n]['clean']['ece']:.3f} / {results[n]['corruption_mean']['ece']:.3f}" for n in names]
        )
    )
    print()
    print(row(["recall, balanced subsample"] + names))
    if markdown:
        print("|" + "---|" + "---:|" * len(names))
    for c in classes:
        print(row([c] + [f"{100 * results[n]['balanced_recall'][c]:.1f}" for n in names]))
    print(row(["mean (balanced accuracy)"] + [f"{100 * results[n]['balanced_accuracy']:.1f}" for n in names]))


if __name__ == "__main__":
    run_script(main)
