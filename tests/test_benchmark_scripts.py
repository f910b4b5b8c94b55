"""Benchmark scripts that run part of their work outside ferlab's environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK_FERLAB = """
import runpy, sys
sys.modules["ferlab"] = None  # any `import ferlab...` now raises ImportError
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_vs_fer_fer_worker_does_not_import_ferlab() -> None:
    """vs_fer.py's fer worker runs the same file in fer's own environment, where ferlab is not
    installed: nothing on its way may import ferlab, or the fer column fails. Here, with ferlab
    blocked, it may fail on fer or on the data, never on ferlab."""
    script = ROOT / "benchmarks" / "vs_fer.py"
    worker = [str(script), "--worker", "fer", "--model", "m", "--data", str(ROOT), "--spawned", "0"]
    done = subprocess.run([sys.executable, "-c", BLOCK_FERLAB, *worker], check=False, capture_output=True, text=True)
    assert not re.search(r"import of ferlab halted|No module named 'ferlab", done.stderr), done.stderr


def test_pipeline_shrink_keeps_each_face_where_its_paste_transform_says() -> None:
    """benchmarks/pipeline.py --shrink scales a frame and its faces' paste transforms together:
    the face cut back out of the shrunk frame by its transform is the pasted face."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import pipeline
    finally:
        sys.path.pop(0)
    yy, xx = np.mgrid[:48, :48]
    face = (128 + 100 * np.sin(xx / 6) * np.cos(yy / 9)).astype(np.uint8)  # smooth, survives 4x shrinking
    image = np.full((pipeline.HEIGHT, pipeline.WIDTH, 3), 60, np.uint8)
    matrix = pipeline.paste(image, face, 200, 15, (400, 200), np.ones(3))
    small = pipeline.shrunk(pipeline.Frame(image, [pipeline.Pasted(0, 200, 15, matrix)]), 4)
    assert small.image.shape == (120, 160, 3) and small.faces[0].side == pytest.approx(50)
    cut = pipeline.truth_crop(small.image, small.faces[0], 48, 1)[..., 0].astype(float)
    inner = (slice(8, 40), slice(8, 40))  # away from the feathered edge
    assert np.corrcoef(cut[inner].ravel(), face[inner].ravel().astype(float))[0, 1] > 0.9


def test_prior_offsets_fitted_for_macro_f1_recall_an_under_predicted_class_without_losing_accuracy() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import prior
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [200, 100, 20])
    scores = rng.normal(0, 1, (len(labels), 3))
    scores[np.arange(len(labels)), labels] += 2.0
    scores[:, 2] -= 2.5  # the rare class is almost never predicted as trained
    before = scores.argmax(1)
    offsets = prior.offsets_for_macro_f1(scores, labels)
    after = (scores + offsets).argmax(1)
    assert offsets[0] == 0 and offsets[2] > 1
    assert (after == labels).mean() >= (before == labels).mean()
    assert prior.macro_f1(labels, after, 3) > prior.macro_f1(labels, before, 3) + 0.1


def test_prior_scores_a_model_on_the_classes_it_predicts_dropping_the_others_faces() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import prior
    finally:
        sys.path.pop(0)
    from ferlab.data.dataset import FaceDataset
    from ferlab.labels import FER2013

    labels = np.arange(14) % 7
    dataset = FaceDataset(
        images=np.zeros((14, 48, 48, 3), np.uint8),
        labels=labels,
        splits=np.array(["test"] * 14),
        sources=np.array([f"row{i}" for i in range(14)]),
        label_set=FER2013,
        original_sizes=np.full((14, 2), 48),
        original_modes=np.array(["L"] * 14),
    )
    five = prior.shared_classes(dataset, ["five"])
    assert five.label_set.classes == ("angry", "fear", "happy", "sad", "surprise")
    assert list(five.sources) == [f"row{i}" for i in range(14) if FER2013.classes[labels[i]] in five.label_set.classes]
    assert prior.shared_classes(dataset, ["fer2013-7"]).label_set.classes == FER2013.classes
