"""Build ferlab's wheel, install only its core into a fresh venv, and check it works without PyTorch.

    python scripts/core_install.py [--keep DIR] [--json FILE]

The core install is what `pip install ferlab` gives: inference on ONNX Runtime. This script
builds the wheel from this checkout, makes a new venv, installs the wheel with its core
dependencies only (no extras), then checks that torch is not installed, that `ferlab demo` runs
and that the README's Python snippet runs. It prints the venv's size and the install time; CI
(.ci/run) runs it, and docs/development.md records its output. Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}")
    return result


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def readme_snippet() -> str:
    """The README's Python block: the snippet a new user copies first."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    if not blocks:
        raise SystemExit("README.md has no ```python block")
    return blocks[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="make the venv here and keep it (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ferlab-core-"))
    venv = args.keep or work / "venv"
    try:
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT)])
        wheel = next((work / "dist").glob("ferlab-*.whl"))
        run([sys.executable, "-m", "venv", "--clear", str(venv)])
        python = venv / "bin" / "python"
        started = time.perf_counter()
        run([str(python), "-m", "pip", "install", "-q", str(wheel)])
        install_s = time.perf_counter() - started
        size_mb = folder_mb(venv)
        torch_absent = run([str(python), "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"])
        checks = {"torch not installed": torch_absent.stdout.strip() == "True"}
        demo = run([str(venv / "bin" / "ferlab"), "demo", "--out", str(work / "demo")], cwd=work)
        checks["ferlab demo found and classified the sample's face"] = " face 1 " in demo.stdout and any(
            (work / "demo").glob("*.png")
        )
        snippet = run([str(python), "-c", readme_snippet()], cwd=work)
        checks["README's Python snippet printed a face"] = bool(snippet.stdout.strip())
        figures = {
            "wheel_mb": round(wheel.stat().st_size / 2**20, 1),
            "venv_mb": round(size_mb),
            "install_s": round(install_s, 1),
            "python": sys.version.split()[0],
        }
        for name, passed in checks.items():
            print(f"{'ok  ' if passed else 'FAIL'} {name}")
        print(
            f"wheel {figures['wheel_mb']} MB; core venv {figures['venv_mb']} MB (pip and setuptools included); "
            f"install {figures['install_s']} s"
        )
        if args.json:
            args.json.write_text(json.dumps({**figures, "checks": checks}, indent=2) + "\n")
        return 0 if all(checks.values()) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
