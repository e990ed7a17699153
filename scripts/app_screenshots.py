"""Screenshots of every page and tab of the app, as a new user sees them (Debian chromium).

    .venv/bin/python scripts/app_screenshots.py [--out docs/screenshots] [--port 8531]

Starts `streamlit run app/main.py` on 127.0.0.1, compresses the first sample photo, and saves one
PNG per view.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
TABS = ["Result", "Bit allocation", "Entropy parameters", "Attention", "Latency",
        "Progressive decoding", "Download"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--port", type=int, default=8531)
    ap.add_argument("--width", type=int, default=1500)
    ap.add_argument("--height", type=int, default=3000,
                    help="Streamlit scrolls inside its own container, so the viewport must be tall")
    ap.add_argument("--pages", default="explore,decode,ablation,rd,about")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "streamlit"), "run", "app/main.py",
                             "--server.port", str(args.port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = b.new_page(viewport={"width": args.width, "height": args.height})
            page.set_default_timeout(180_000)
            pages = args.pages.split(",")
            if "explore" in pages:
                page.goto(url)
                page.get_by_role("button", name="Compress").wait_for()
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / "01_start.png"), clip={"x": 0, "y": 0, "width": args.width, "height": 1000})
                page.get_by_role("button", name="Compress").click()
                page.get_by_role("tab", name="Bit allocation").wait_for()
                page.get_by_text("whole-decode speed-up").first.wait_for(state="attached")
                page.get_by_text(re.compile(r"^JPEG q\d+: ")).first.wait_for()
                page.wait_for_timeout(2500)
                for k, tab in enumerate(TABS):
                    page.get_by_role("tab", name=tab).click()
                    page.wait_for_timeout(1500)
                    name = tab.lower().replace(" ", "_")
                    page.screenshot(path=str(out / f"02_{k}_{name}.png"), full_page=True)
            for k, (slug, title) in enumerate([("decode", "Decode a .gmx file"),
                                               ("ablation", "Partition ablation"),
                                               ("rd", "Rate-distortion curves"),
                                               ("about", "About & limits")]):
                if slug not in pages:
                    continue
                page.goto(f"{url}/{slug}")
                page.wait_for_timeout(3000)
                if slug == "ablation":
                    page.get_by_role("button", name="Run ablation").click()
                    page.get_by_text("rate vs quality").first.wait_for()
                    page.wait_for_timeout(1500)
                page.screenshot(path=str(out / f"03_{k}_{slug}.png"), full_page=True)
            b.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print("\n".join(str(p) for p in sorted(out.glob("*.png"))))


if __name__ == "__main__":
    main()
