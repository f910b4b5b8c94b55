"""Record the training class prior in a model trained before ferlab recorded it.

    python scripts/record_class_prior.py src/ferlab/weights/ferplus8.pt configs/shipped/ferplus8.yaml

Loads the model's training split exactly as the trainer does (the same config: data path,
label set, subsampling, vote or hard targets), takes the mean training target per class,
and writes it into the model file's record (`class_prior`); the weights are unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ferlab.errors import FerlabError, run_script
from ferlab.models.bundle import bundle_file, load_bundle, save_bundle
from ferlab.models.prior import prior_of_targets
from ferlab.training.config import load_config
from ferlab.training.data import load_training_data, split_tensors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="model.pt or run folder")
    parser.add_argument("config", type=Path, help="the config the model was trained with")
    args = parser.parse_args()
    bundle = load_bundle(args.model)
    config = load_config(args.config)
    dataset = load_training_data(config, 48, 1)  # the size does not change the targets
    if dataset.label_set.classes != bundle.record.classes:
        raise FerlabError(
            f"{args.config} trains {dataset.label_set.classes}, the model predicts "
            f"{bundle.record.classes}: not the model's config"
        )
    targets = split_tensors(dataset, "train", soft=config.train.targets == "votes").targets.numpy()
    prior = tuple(prior_of_targets(targets))
    bundle.record = bundle.record.with_facts(class_prior=prior)
    save_bundle(bundle, bundle_file(args.model))
    print(dict(zip(bundle.record.classes, (round(p, 4) for p in prior))))
    return 0


if __name__ == "__main__":
    run_script(main)
