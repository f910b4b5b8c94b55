"""The web app in a real headless Chromium: `streamlit run` on localhost, driven through Selenium.

Needs Debian's chromium and chromium-driver (setup.sh installs them when run as root) and
selenium; without them the tests are skipped and say why. The live-webcam test also needs
the optional streamlit-webrtc and feeds Chromium's fake camera a video of a real face.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import ferlab.apps
from conftest import GRACE_HOPPER, free_port
from ferlab.inference.annotate import COLOR, UNCERTAIN_COLOR
from ferlab.inference.predictor import load
from ferlab.models.shipped import MODEL_ENV

WEBAPP = Path(ferlab.apps.__file__).with_name("webapp.py")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason=(
            f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
            "apt-get install chromium chromium-driver"
        ),
    ),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
from selenium.common.exceptions import TimeoutException  # noqa: E402  (only once selenium is known to be there)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1280,1600",
]
COUNT_BOX_PIXELS = """
const video = document.querySelector('video');
if (!video || !video.videoWidth) return 0;
const canvas = document.createElement('canvas');
canvas.width = video.videoWidth; canvas.height = video.videoHeight;
const context = canvas.getContext('2d');
context.drawImage(video, 0, 0);
const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
let count = 0;
for (let i = 0; i < pixels.length; i += 4) {
  if (Math.abs(pixels[i] - arguments[0]) < 40 && Math.abs(pixels[i + 1] - arguments[1]) < 40
      && Math.abs(pixels[i + 2] - arguments[2]) < 40) count++;
}
return count;
"""
"""How many pixels of the live video are within 40 of an RGB colour in every channel."""


@contextlib.contextmanager
def streamlit_app(model: str, folder: Path) -> Iterator[str]:
    """`streamlit run` on a free localhost port with one model, stopped on exit."""
    port = free_port()
    environment = {**os.environ, MODEL_ENV: model, "FERLAB_CACHE_DIR": str(folder / "cache")}
    with (folder / "streamlit.log").open("w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(WEBAPP),
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.read() == b"ok":
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start: {(folder / 'streamlit.log').read_text()[-2000:]}")
                time.sleep(0.3)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture(scope="module")
def app_url(blob_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app with the blob model, for the module."""
    with streamlit_app(str(blob_model), tmp_path_factory.mktemp("streamlit")) as url:
        yield url


def chromium(profile: Path, *extra_flags: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*BROWSER_FLAGS, *extra_flags, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def button(text: str) -> tuple[str, str]:
    """A locator for a button by its text in any case (the DOM text, not the CSS-uppercased one)."""
    return (
        By.XPATH,
        f"//button[translate(normalize-space(), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')='{text}']",
    )


def test_uploading_a_photo_shows_the_label_and_chart(app_url: str, blob_model: Path, tmp_path: Path) -> None:
    [expected] = load(blob_model).predict(GRACE_HOPPER)
    driver = chromium(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 40)
        driver.get(app_url)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]"))).send_keys(str(GRACE_HOPPER))
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Face 1:"))
        wait.until(
            ec.presence_of_element_located(
                (By.CSS_SELECTOR, "[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg")
            )
        )
        body = driver.find_element(By.TAG_NAME, "body").text
        screenshot = tmp_path / "app.png"
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert f"Face 1: {expected.label}" in body and f"{expected.confidence:.0%} confidence" in body
    assert screenshot.stat().st_size > 10_000


def test_live_webcam_frames_come_back_annotated(app_url: str, blob_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("streamlit_webrtc", reason="live video needs the optional streamlit-webrtc")
    [expected] = load(blob_model).predict(GRACE_HOPPER)
    color = UNCERTAIN_COLOR if expected.uncertain else COLOR
    rgb = np.asarray(Image.open(GRACE_HOPPER).convert("RGB"))
    in_photo = int((np.abs(rgb.astype(int) - color).max(axis=2) < 40).sum())
    camera = tmp_path / "camera.y4m"  # Chromium's fake camera plays this file in a loop
    with camera.open("wb") as video:
        video.write(f"YUV4MPEG2 W{rgb.shape[1]} H{rgb.shape[0]} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(5):
            video.write(b"FRAME\n" + cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    driver = chromium(
        tmp_path / "profile",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    )
    try:
        wait = WebDriverWait(driver, 40)
        driver.get(app_url)
        wait.until(ec.element_to_be_clickable((By.XPATH, "//label[.//p[text()='Live webcam']]"))).click()
        for _ in range(3):  # a click that lands while Streamlit re-renders the component is lost: click again
            driver.switch_to.default_content()
            driver.switch_to.frame(wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe"))))
            wait.until(ec.element_to_be_clickable(button("start"))).click()
            try:
                WebDriverWait(driver, 10).until(ec.presence_of_element_located(button("stop")))
                break
            except TimeoutException:
                continue
        # The box, label and bars the server drew on the frames, in the colour of the prediction.
        wait.until(lambda d: d.execute_script(COUNT_BOX_PIXELS, *color) > in_photo + 500)
        driver.switch_to.default_content()
        driver.save_screenshot(str(tmp_path / "live.png"))
    finally:
        driver.quit()
    assert (tmp_path / "live.png").stat().st_size > 10_000


X_AXES = """
return Array.from(document.querySelectorAll('[data-testid=stVegaLiteChart]')).map(chart => {
  const axis = Array.from(chart.querySelectorAll('[aria-roledescription=axis]'))
    .find(a => (a.getAttribute('aria-label') || '').startsWith('X-axis'));
  return axis ? axis.getAttribute('aria-label') : null;
});
"""
"""The description Vega gives each chart's x axis, with its range ('... values from 0% to 100%')."""


def test_a_group_photo_with_a_shipped_model_shows_no_path_and_one_axis_for_all_faces(tmp_path: Path) -> None:
    """With a shipped model (trained on `.data/ferplus`, its card full of such paths), the page,
    its full model card opened, names the data and holds no developer path; every face's chart
    spans the same 0-100 % axis, so two faces can be compared at a glance."""
    rgb = np.asarray(Image.open(GRACE_HOPPER).convert("RGB"))
    photo = tmp_path / "pair.png"
    Image.fromarray(np.concatenate([rgb, rgb[:, ::-1]], axis=1)).save(photo)
    (tmp_path / "server").mkdir()
    with streamlit_app("ferplus8-fast", tmp_path / "server") as url:
        driver = chromium(tmp_path / "profile")
        try:
            wait = WebDriverWait(driver, 60)
            driver.get(url)
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]"))).send_keys(str(photo))
            wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Face 2:"))
            wait.until(lambda d: len([a for a in d.execute_script(X_AXES) if a]) == 2)
            axes = driver.execute_script(X_AXES)
            card = wait.until(ec.element_to_be_clickable((By.XPATH, "//summary[.//p[contains(., 'Full model card')]]")))
            card.click()
            wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Test results"))
            body = driver.find_element(By.TAG_NAME, "body").text
            page = driver.page_source
        finally:
            driver.quit()
    assert "Training data: FER+" in body.replace("**", "")
    assert ".data/" not in page and "runs/" not in page
    assert len(set(axes)) == 1 and "0% to 100%" in axes[0], axes
