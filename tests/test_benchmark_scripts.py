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
