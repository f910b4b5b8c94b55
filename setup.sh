#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with ferlab, every extra, and its test and lint tools.
# torch is pinned to the local CPU build (2.13.0); an unpinned torch pulls GBs of CUDA.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
# all: every front end (web app, REST API, live webcam) and the pretrained weights; dev: the test
# tools, ruff, mypy (with stubs) and import-linter that .ci/run runs.
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all,dev]"
echo "ferlab installed in .venv — activate with: source .venv/bin/activate"
# Headless Chromium for tests/test_browser.py, from Debian's packages (the tests skip without it).
if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
        || echo "warning: could not install chromium and chromium-driver; the browser tests will be skipped" >&2
fi
