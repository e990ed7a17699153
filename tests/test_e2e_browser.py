"""End to end in a real browser: `streamlit run app/main.py` on 127.0.0.1, Debian's chromium driven
by Playwright: upload a photo, press Compress, wait for the charts, find no error text.

Skipped only when /usr/bin/chromium is absent (`.ci/run` and `scripts/setup.sh --with-browser`
install it with apt-get); Playwright's own browser download cannot work on these machines.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]
ERROR_SELECTORS = ['[data-testid="stException"]', '[data-testid="stAlertContentError"]']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    pytest.importorskip("playwright.sync_api")
    from gm_core.checkpoint import DEFAULT_CHECKPOINT, random_model, save_checkpoint
    env = dict(os.environ)
    if not Path(DEFAULT_CHECKPOINT).is_file():
        model, _ = random_model("tiny")
        path = tmp_path_factory.mktemp("ckpt") / "random_tiny.safetensors"
        save_checkpoint(model, path)
        env["GMX_CHECKPOINT"] = str(path)
    port = free_port()
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")
    streamlit = Path(sys.executable).parent / "streamlit"
    cmd = [str(streamlit) if streamlit.exists() else shutil.which("streamlit"), "run", "app/main.py",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited: {Path(log.name).read_text()[-2000:]}")
        else:
            pytest.fail("streamlit did not come up within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _no_errors(page):
    for sel in ERROR_SELECTORS:
        assert page.locator(sel).count() == 0, page.locator(sel).first.inner_text()
    body = page.inner_text("body")
    assert "Traceback" not in body
    assert " failed: " not in body


def test_upload_compress_and_see_the_charts(server, browser, tmp_path, kodak_image):
    from PIL import Image
    photo = tmp_path / "photo.png"
    Image.fromarray(kodak_image[128:384, 192:576]).save(photo)  # 384 x 256
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.set_default_timeout(120_000)
    page.goto(server)
    page.get_by_role("button", name="Compress").wait_for()
    page.get_by_text("Upload my own").click()
    page.locator('input[type="file"]').first.set_input_files(str(photo))
    page.get_by_text("photo.png: 384x256 pixels").wait_for()
    page.get_by_role("button", name="Compress").click()
    page.get_by_text("bits per pixel").first.wait_for()
    page.get_by_role("tab", name="Bit allocation").wait_for()
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4")
    # the second phase: classical codecs and the cache-off decode, then one more render
    page.get_by_text("whole-decode speed-up").first.wait_for(state="attached")
    page.get_by_text(re.compile(r"^JPEG q\d+: ")).first.wait_for()
    _no_errors(page)
    shot = tmp_path / "result.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    # the other tabs render in the browser too
    for tab in ("Bit allocation", "Attention", "Latency", "Progressive decoding"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)
        _no_errors(page)
    page.get_by_role("tab", name="Latency").click()
    page.get_by_text("entropy-model speed-up").wait_for()
    out = os.environ.get("GMX_SCREENSHOT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / "e2e_result.png")
    page.close()
