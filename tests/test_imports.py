"""Importing ferlab, or any of its modules, changes nothing global.

A library that picks matplotlib's backend, sets torch's thread count or seeds a random
generator when it is imported changes the program that imports it. One fresh interpreter
loads numpy, torch and matplotlib and records their state; then, for each ferlab module, a
forked copy of it imports that module alone and reports what changed. Modules whose
optional dependencies are missing are skipped.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,  # one interpreter loading torch and every ferlab module: about 25 s here
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the check forks one child per module"),
]

SRC = Path(__file__).resolve().parents[1] / "src"

KNOWN_FAILURES: dict[str, str] = {}
"""Modules that still fail the check, with the reason; each is a strict xfail, not a skip."""

THIRD_PARTY = ("PIL.Image", "cv2", "sklearn.metrics", "sklearn.model_selection", "onnxruntime", "yaml", "typer")
"""Loaded before the baseline: what importing them does is theirs, and the children start faster."""

CHECK = (
    f"THIRD_PARTY = {THIRD_PARTY!r}\n"
    + r"""
import json, os, random, sys, importlib
import numpy as np
import torch
import matplotlib

for dependency in THIRD_PARTY:  # their own import-time effects (scikit-learn draws from `random`) are not ferlab's
    try:
        importlib.import_module(dependency)
    except ImportError:
        pass

def state():
    return {
        "matplotlib backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),
        "torch threads": torch.get_num_threads(),
        "torch interop threads": torch.get_num_interop_threads(),
        "torch RNG": torch.random.get_rng_state().tolist(),
        "numpy RNG": [repr(part) if not hasattr(part, "tolist") else part.tolist() for part in np.random.get_state()],
        "python RNG": repr(random.getstate()),
    }

results = {}
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        before = state()  # in the child: os.fork() itself reseeds Python's `random` there
        try:
            importlib.import_module(name)
            after = state()
            outcome = {"changed": sorted(key for key in before if before[key] != after[key])}
        except ModuleNotFoundError as exc:
            outcome = {"missing": str(exc.name)}
        except BaseException as exc:
            outcome = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write, "w") as pipe:
            pipe.write(json.dumps(outcome))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    results[name] = json.loads(text) if text else {"error": "the child died without an answer"}
print(json.dumps(results))
"""
)


def _walk(paths: list[str], prefix: str) -> list[str]:
    """Module names under `paths`, found on disk: pkgutil.walk_packages would import every package."""
    names = []
    for info in pkgutil.iter_modules(paths, prefix):
        if info.name.endswith(".__main__"):
            continue  # `python -m ferlab`: importing it runs the command, which is its job
        names.append(info.name)
        if info.ispkg:
            names.extend(_walk([os.path.join(path, info.name.rsplit(".", 1)[1]) for path in paths], info.name + "."))
    return names


MODULES = ["ferlab", *_walk(list(find_spec("ferlab").submodule_search_locations or []), "ferlab.")]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def import_effects() -> dict[str, dict[str, object]]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    environment.pop("MPLBACKEND", None)
    done = subprocess.run(
        [sys.executable, "-c", CHECK, *MODULES],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[name], strict=True))
        if name in KNOWN_FAILURES
        else name
        for name in MODULES
    ],
)
def test_importing_changes_no_global_state(module: str, import_effects: dict[str, dict[str, object]]) -> None:
    outcome = import_effects[module]
    if "missing" in outcome:
        if str(outcome["missing"]).startswith("ferlab"):
            pytest.fail(f"{module} imports a ferlab module that does not exist: {outcome['missing']}")
        pytest.skip(f"{module} needs the optional package {outcome['missing']}")
    assert "error" not in outcome, f"importing {module} failed: {outcome['error']}"
    assert outcome["changed"] == [], f"importing {module} changes {', '.join(outcome['changed'])}"  # type: ignore[arg-type]


def test_every_module_is_checked() -> None:
    """The walk finds the packages and modules the layers contract names."""
    for name in ("ferlab.labels", "ferlab.errors", "ferlab.data.eda", "ferlab.evaluation.plots", "ferlab.apps.webapp"):
        assert name in MODULES
