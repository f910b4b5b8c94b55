"""The layer contract of docs/development.md's Layout section holds: no import runs up a layer.

`lint-imports` (import-linter) checks the contract in pyproject.toml; this runs the same
check inside the test suite, in a fresh interpreter with this checkout's `src` first on the
path, and checks that scripts/import_graph.py, which draws the picture in docs/figures,
reads the same layers and finds nothing the contract does not already name.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("importlinter", reason="needs import-linter (the test extra)")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_lint_imports_keeps_the_layers_contract() -> None:
    done = _run(
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_import_graph_shows_no_arrow_up_a_layer_that_the_contract_does_not_name() -> None:
    done = _run(
        "import sys; sys.path.insert(0, 'scripts'); import import_graph as g; "
        "layers, ignored_imports = g.contract(); edges, ignored = g.package_edges(layers, ignored_imports); "
        "print(sorted(set(g.wrong_way(edges, layers)) - ignored)); "
        "print(sorted(n for layer in layers for n in layer))"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    unnamed, packages = done.stdout.strip().splitlines()[-2:]
    assert unnamed == "[]"
    for name in ("ferlab.labels", "ferlab.data", "ferlab.models", "ferlab.training", "ferlab.inference"):
        assert f"'{name}'" in packages
