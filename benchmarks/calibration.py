"""Does a model's confidence transfer? ECE on FER+ test, FER2013 PrivateTest and corrupted FER+ test.

    python benchmarks/calibration.py ferplus8 runs/lite0-ferplus96

For each model, three temperatures: none (T = 1), the stored one (fitted on clean FER+
validation faces when the model was trained), and one fitted on FER+ validation faces
under the benchmark's corruptions mixed with the clean ones ("robust"). FER2013 PrivateTest
holds the same pictures as FER+ test under FER2013's original labels, which disagree with
the FER+ majority on many faces: the table prints accuracy and mean confidence beside ECE,
since no single confidence can match both label sets where their accuracies differ.
"""

from __future__ import annotations

import argparse

import numpy as np

from ferlab.data.loader import load_dataset
from ferlab.data.options import LoadOptions
from ferlab.errors import run_script
from ferlab.evaluation.robustness import CORRUPTIONS, SEVERITIES, ScoredModel, corrupt
from ferlab.models.calibration import expected_calibration_error, fit_temperature


def _sample(n: int, limit: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _corrupted(faces: np.ndarray, labels: np.ndarray, per_condition: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_condition` faces under every corruption and severity, stacked."""
    images, targets = [], []
    for k, (name, severity) in enumerate((n, s) for n in CORRUPTIONS for s in SEVERITIES):
        chosen = _sample(len(labels), per_condition, seed + k)
        images.append(corrupt(faces[chosen], name, severity, seed))
        targets.append(labels[chosen])
    return np.concatenate(images), np.concatenate(targets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--ferplus", default=".data/ferplus")
    parser.add_argument("--fer2013", default=".data/fer2013")
    parser.add_argument("--per-condition", type=int, default=300, help="faces per corrupted condition")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    options = LoadOptions(size=48, channels=3)
    ferplus = load_dataset(args.ferplus, options=options)
    fer2013 = load_dataset(args.fer2013, options=options).split("test")
    valid, test = ferplus.split("val"), ferplus.split("test")
    valid_corrupted = _corrupted(valid.images, valid.labels, args.per_condition, args.seed + 1000)
    test_corrupted = _corrupted(test.images, test.labels, args.per_condition, args.seed)
    sets = {
        "FER+ test": (test.images, test.labels, ferplus.label_set.classes),
        "FER2013 PrivateTest": (fer2013.images, fer2013.labels, fer2013.label_set.classes),
        "FER+ test corrupted": (*test_corrupted, ferplus.label_set.classes),
    }
    print("| model | temperature | " + " | ".join(f"{name}: acc / conf / ECE" for name in sets) + " |")
    print("|---|---|" + "---:|" * len(sets))
    for reference in args.models:
        fit_model = ScoredModel(reference, ferplus.label_set.classes)
        robust_logits = np.concatenate([fit_model.logits(valid.images), fit_model.logits(valid_corrupted[0])])
        robust_labels = np.concatenate([valid.labels, valid_corrupted[1]])
        temperatures = {
            "none": 1.0,
            "stored": fit_model.bundle.record.temperature,
            "robust": fit_temperature(robust_logits, robust_labels),
        }
        logits = {}
        for name, (images, labels, classes) in sets.items():
            model = fit_model if classes == ferplus.label_set.classes else ScoredModel(reference, classes)
            logits[name] = (model, model.logits(images), labels)
        for label, temperature in temperatures.items():
            cells = []
            for model, set_logits, labels in logits.values():
                probabilities = model.probabilities(set_logits, temperature=temperature)
                accuracy = (probabilities.argmax(1) == labels).mean()
                cells.append(
                    f"{100 * accuracy:.1f} / {100 * probabilities.max(1).mean():.1f} / "
                    f"{expected_calibration_error(probabilities, labels):.3f}"
                )
            print(f"| {reference} | {label} ({temperature:.2f}) | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    run_script(main)
