"""Benchmark scripts that run part of their work outside ferlab's environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
