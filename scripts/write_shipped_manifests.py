"""Write the ONNX manifest of every shipped model into the package's weights/onnx/ and check
`weights/models.json` against the bundles: run after replacing a shipped `.pt` file.

    python scripts/write_shipped_manifests.py

The manifest lets the predictor run a shipped model's ONNX export without importing torch
(ferlab.models.manifest); the table's `manifest` entry must name the file written here.
"""

from __future__ import annotations

import sys

from ferlab.inference.engine import SHIPPED_ONNX_DIR, weights_digest
from ferlab.models.bundle import load_bundle
from ferlab.models.manifest import ModelManifest, file_sha256
from ferlab.models.shipped import WEIGHTS_DIR, shipped_models


def main() -> int:
    problems = []
    for name, entry in shipped_models().items():
        bundle = load_bundle(entry.path)
        manifest = ModelManifest.from_bundle(bundle, file_sha256(entry.path), weights_digest(bundle))
        path = manifest.save(SHIPPED_ONNX_DIR)
        print(f"{name}: wrote {path.relative_to(WEIGHTS_DIR.parent)}")
        if entry.manifest_path != path:
            problems.append(f"{name}: models.json names {entry.manifest}, the bundle's manifest is onnx/{path.name}")
        if entry.classes != manifest.classes:
            problems.append(f"{name}: models.json lists classes {entry.classes}, the bundle has {manifest.classes}")
    for problem in problems:
        print("MISMATCH", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
