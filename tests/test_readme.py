"""The README is the front door: short, picture first, and every quick-start command runs as written.

Each line of the README's quick start is run in a fresh folder that holds the files it names,
made here: `photo.jpg` (the bundled sample), `photos/` (two photos and a face-free picture) and
`clip.mp4` (a few frames of the sample). The two servers are started on free ports, asked one
request each, and stopped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import ferlab
from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def quick_start() -> list[str]:
    """The commands of the README's quick-start block, comments stripped."""
    section = README[README.index("## Quick start") :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the quick start has no bash block"
    return [line.split("  #")[0].strip() for line in block[1].splitlines() if line.strip()]


def test_the_readme_is_a_front_door() -> None:
    lines = README.splitlines()
    assert len(lines) <= 160
    first_command = next(i for i, line in enumerate(lines) if line.startswith("ferlab "))
    assert first_command < 40, f"the first runnable command is on line {first_command + 1}"
    picture = re.search(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert picture and (ROOT / picture[1]).is_file()
    assert "pytest" in README  # .ci/run runs the README's test command
    for link in re.findall(r"\]\(((?:docs|src)/[^)#]+)", README):
        assert (ROOT / link).exists(), link


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(ferlab.SAMPLE, tmp_path / "photo.jpg")
    (tmp_path / "photos").mkdir()
    shutil.copy(ferlab.SAMPLE, tmp_path / "photos" / "one.jpg")
    Image.open(ferlab.SAMPLE).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "photos" / "two.jpg")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "photos" / "wall.png")
    frame = cv2.imread(str(ferlab.SAMPLE))
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, frame.shape[1::-1])
    for shift in range(5):
        writer.write(np.roll(frame, shift * 4, axis=1))
    writer.release()
    return tmp_path


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        shlex.split(command), check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:  # an answer, if not a page: the server is up
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{url} never answered") from None
            time.sleep(0.5)


@pytest.mark.slow
def test_every_quick_start_command_runs(workdir: Path) -> None:
    commands = quick_start()
    servers = [c for c in commands if c in ("ferlab app", "ferlab serve")]
    assert servers == ["ferlab app", "ferlab serve"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    ports = {"ferlab app": free_port(), "ferlab serve": free_port()}
    started = {
        name: subprocess.Popen(
            [*shlex.split(name), "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, port in ports.items()
    }
    try:
        for command in commands:
            if command in started:
                wait_for(f"http://127.0.0.1:{ports[command]}/", started[command])
                continue
            if command.startswith("curl"):
                command = command.replace(":8000/", f":{ports['ferlab serve']}/")
                wait_for(f"http://127.0.0.1:{ports['ferlab serve']}/healthz", started["ferlab serve"])
            result = run(command, workdir)
            assert result.returncode == 0, (command, result.stderr[-2000:])
            if command.startswith("curl"):
                assert json.loads(result.stdout)["faces"], result.stdout
    finally:
        for process in started.values():
            process.terminate()
            process.wait(timeout=30)
    assert list((workdir / "ferlab-demo").glob("*.png"))
    rows = (workdir / "results.csv").read_text().splitlines()
    assert len(rows) == 4  # the header, a face in each photo, and the face-free picture's reason
    assert list((workdir / "out").glob("*.png"))
    assert (workdir / "clip-out" / "frames.csv").is_file()


def test_the_readme_model_table_quotes_each_card() -> None:
    from test_reports import SHIPPED, _card_figures

    rows = {
        cells[0].strip("` "): cells
        for cells in (line.strip("|").split("|") for line in README.splitlines() if line.startswith("| `"))
    }
    assert set(rows) == set(SHIPPED)
    for name, cells in rows.items():
        assert float(cells[3].strip().rstrip(" %")) == _card_figures(name)["accuracy"], name
