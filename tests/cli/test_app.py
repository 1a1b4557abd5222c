"""The web page (tools/app.py): its helpers, and the page itself in headless Chromium (Selenium)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from tests.helpers.pipeline import ROOT, stage_one_checkpoint, stage_two_checkpoint

SCREENSHOT_DIR = os.environ.get("LVMM_SCREENSHOT_DIR")  # where the browser test also keeps its screenshots


def test_frame_plan_and_mask():
    from lvmm.cli.app import frame_plan, mask_from_editor

    assert frame_plan(0.75, 8, loop=True, max_frames=8) == 7  # a loop plays frames 1..K-1
    assert frame_plan(0.625, 8, loop=False, max_frames=8) == 4  # a clip is I_0 + K frames
    with pytest.raises(ValueError, match="this model makes 2 to 7"):
        frame_plan(2, 8, loop=True, max_frames=8)
    layer = np.zeros((10, 20, 4), np.uint8)
    assert mask_from_editor({"background": None, "layers": [layer]}, (10, 20)) is None  # nothing painted
    layer[2:5, 3:9, 3] = 255
    mask = mask_from_editor({"layers": [layer]}, (20, 40))  # resized to the photo
    assert mask.shape == (20, 40) and mask[4:10, 6:18].all() and mask.sum() == 6 * 12


def test_command_line_binds_locally_by_default():
    from lvmm.cli.app import build_parser

    args = build_parser().parse_args(["--ckpt", "stage2.ckpt"])
    assert args.host == "127.0.0.1" and args.model is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--ckpt", "a", "--model", "b"])  # one source only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser():
    """A headless Chromium driven through Debian's chromedriver, or a pytest skip saying what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e .[dev])")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "no chromium/chromedriver on PATH (.ci/run installs them: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except Exception as e:  # a browser that is installed but cannot start here
        pytest.skip(f"chromium did not start: {type(e).__name__}: {str(e)[:200]}")


@pytest.fixture()
def server(tmp_path):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install -e .[dev])")
    from lvmm.cli.export import main as export

    s1 = stage_one_checkpoint(tmp_path / "stage1.safetensors")
    s2 = stage_two_checkpoint(tmp_path / "stage2.safetensors", s1)
    package = export(["--stage2", str(s2), "--out", str(tmp_path / "package")])
    port = _free_port()
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "app.py"), "--model", str(package), "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"),
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180  # importing torch and gradio on a busy 2-core machine
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)  # ok: the test's own localhost server
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(
                        f"the app did not start: {(tmp_path / 'app.log').read_text()[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait_status(driver, prefixes, timeout=120):
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    while time.time() < deadline:
        text = driver.find_element(By.ID, "status").text
        if any(p in text for p in prefixes):
            return text
        time.sleep(0.3)
    raise AssertionError(f"status never showed {prefixes}: {text!r}")


def _find(driver, selector, timeout=60):
    """The element once the page's scripts have rendered it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, selector)))


def _set_number(driver, selector, value):
    from selenium.webdriver.common.keys import Keys

    box = _find(driver, selector)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value))
    box.send_keys(Keys.TAB)


def test_page_in_a_real_browser(server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from lvmm.media import read_video, write_image

    url, proc = server
    driver = _browser()
    shots = []

    def shot(name):
        path = tmp_path / name
        driver.save_screenshot(str(path))
        if SCREENSHOT_DIR:
            os.makedirs(SCREENSHOT_DIR, exist_ok=True)
            shutil.copy(path, os.path.join(SCREENSHOT_DIR, name))
        shots.append(path)

    try:
        h, w, fps, duration = 64, 96, 8, 0.75  # a loop of 6 frames
        from PIL import Image

        from lvmm.datasets.procedural import load_photo

        coffee = np.asarray(Image.fromarray(load_photo("coffee")).resize((w, h), Image.BILINEAR))
        photo = write_image(tmp_path / "photo.png", coffee)
        driver.get(url)
        _find(driver, "#photo-upload input[type=file]").send_keys(str(photo))
        assert _wait_status(driver, ["loaded", "Cannot"], 60) == f"Photo {w}x{h} loaded."
        # a stroke of the region brush over the left part of the photo
        _find(driver, "#brush button[aria-label=Brush]").click()
        canvas = driver.find_elements(By.CSS_SELECTOR, "#brush canvas")[-1]
        stroke = ActionChains(driver).move_to_element_with_offset(canvas, -100, -10).click_and_hold()
        for dx in range(-100, -40, 10):
            stroke = stroke.move_to_element_with_offset(canvas, dx, 0)
        stroke.release().perform()
        # one drag arrow: two clicks on the second copy of the photo
        arrows = _find(driver, "#arrows img")
        ActionChains(driver).move_to_element_with_offset(arrows, -15, 0).click().perform()
        _wait_status(driver, ["click its end"], 30)
        ActionChains(driver).move_to_element_with_offset(arrows, 10, 5).click().perform()
        _wait_status(driver, ["1 arrow(s)"], 30)
        driver.find_element(By.XPATH, "//label[contains(., 'seamless loop')]").click()
        _set_number(driver, "#steps input[type=number]", 3)
        _set_number(driver, "#fps input", fps)
        _set_number(driver, "#duration input", duration)
        driver.find_element(By.ID, "generate").click()
        status = _wait_status(driver, ["Done", "Cannot"], 150)
        assert status.startswith("Done") and f"6 frames of {w}x{h}" in status, status
        coverage = float(status.split("region brush covers ")[1].split(" %")[0])
        assert 0 < coverage < 100  # the stroke reached the server
        assert "1 drag arrow(s)" in status
        src = _find(driver, "#video video").get_attribute("src")
        video = tmp_path / "served.mp4"
        video.write_bytes(urllib.request.urlopen(src, timeout=30).read())  # ok: localhost
        frames, served_fps = read_video(video)  # PyAV
        assert frames.shape == (round(duration * fps), h, w, 3) and served_fps == pytest.approx(fps)
        listing = driver.find_element(By.ID, "downloads").text.replace(
            "\n", ""
        )  # names and suffixes sit in separate elements
        assert all(n in listing for n in ("lvmm_seed0.mp4", "lvmm_seed0.gif", "fields.npy")), listing
        links = [
            a.get_attribute("href")
            for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")
            if a.get_attribute("href")
        ]
        fields = next(link for link in links if link.endswith("fields.npy"))
        (tmp_path / "fields.npy").write_bytes(urllib.request.urlopen(fields, timeout=30).read())  # ok: localhost
        assert np.load(tmp_path / "fields.npy", allow_pickle=False).shape[:3] == (
            1,
            round(duration * fps),
            3,
        )  # (seeds, T, 3, h, w)
        assert driver.find_element(By.CSS_SELECTOR, "#flow video").get_attribute("src")
        shot("app_after_generation.png")

        # a corrupt audio file: a message in the page
        rain = tmp_path / "rain.wav"
        rain.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio" + bytes(range(256)))
        _find(driver, "#audio-upload input[type=file]").send_keys(str(rain))
        time.sleep(1)
        driver.find_element(By.ID, "generate").click()
        message = _wait_status(driver, ["Cannot animate"], 60)
        assert "rain.wav" in message and "/tmp" not in message, message

        # a text file as the photo: a message in the page, and the server keeps serving
        notes = tmp_path / "notes.txt"
        notes.write_text("not a photo")
        for button in driver.find_elements(By.CSS_SELECTOR, "#photo-upload button"):  # clear the photo first
            if (button.get_attribute("aria-label") or "").lower() in ("clear", "remove", "close"):
                button.click()
        _find(driver, "#photo-upload input[type=file]").send_keys(str(notes))
        message = _wait_status(driver, ["Cannot use this upload"], 60)
        assert "notes.txt" in message and "not a readable image" in message, message
        shot("app_bad_upload.png")
        assert proc.poll() is None and urllib.request.urlopen(url, timeout=10).status == 200  # ok: localhost
    finally:
        driver.quit()
