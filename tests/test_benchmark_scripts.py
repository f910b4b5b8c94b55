"""Benchmark scripts that run part of their work outside ferlab's environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_FERLAB = """
import runpy, sys
sys.modules["ferlab"] = None  # any `import ferlab...` now raises ImportError
runpy.run_path(sys.argv[1], run_name="worker_check")
"""


def test_vs_fer_module_level_does_not_import_ferlab() -> None:
    """vs_fer.py's fer worker runs the same file in fer's own environment, where ferlab is not
    installed: its module level must load without ferlab, or the fer column silently fails."""
    script = ROOT / "benchmarks" / "vs_fer.py"
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_FERLAB, str(script)], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
