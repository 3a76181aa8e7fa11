"""Save a screenshot of the real demo page answering a bundled example clip (docs/screenshot_demo.png).

Starts `python app.py` with its defaults (the bundled model and the lesion and crop models its config names) on
127.0.0.1 in a child process, opens the page in headless Debian chromium through Playwright, picks the example
clip, presses "Analyse", waits for the decision, the lesion outline, the P-over-time plot and Grad-CAM, saves a
full-page PNG and stops the server.

Usage:
    python docs/make_screenshot.py [--example malignant_bus_0005-l_sweep] [--out docs/screenshot_demo.png]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 1000}
TIMEOUT_MS = 180_000
START_TIMEOUT_S = 180.0
DEFAULT_EXAMPLE = "malignant_bus_0005-l_sweep"  # a bundled clip (examples/clips): two views, lesion, P over time
DEFAULT_OUT = ROOT / "docs" / "screenshot_demo.png"
PREDICTION_TEXT = "text=/benign|malignant|no lesion/"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_served(url: str, process: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> None:
    """Return once `url` answers; raise when the server exits or does not answer within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1.0)
    raise RuntimeError(f"app.py did not serve {url} within {timeout_s:g} s")


@contextmanager
def served_app(extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """`python app.py` with its defaults (plus `extra_args`) on 127.0.0.1 and a free port; yields its URL and stops
    it with SIGTERM (the app then deletes every file it wrote)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                                *extra_args], cwd=ROOT, env={**os.environ, **OFFLINE})
    try:
        wait_until_served(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def choose_input(page, uploads: list[Path], example: str | None) -> None:
    """Upload files, or pick a bundled example from the page's example list."""
    if example:
        page.get_by_text(example, exact=True).first.click()
        page.wait_for_function("name => document.querySelector('#example input').value === name", arg=example)
        return
    page.locator("#upload input[type=file]").set_input_files([str(path) for path in uploads])
    page.locator("#upload").get_by_text(uploads[0].stem).first.wait_for()


def capture_demo(url: str, uploads: list[Path], out: Path, timeout_ms: int = TIMEOUT_MS,
                 example: str | None = None) -> dict[str, str]:
    """Upload `uploads` (or pick `example`) on the demo page at `url`, run it, wait for the answer, the plot and
    Grad-CAM, save a screenshot to `out`.

    Returns the label text, the summary text, the page's model description and the `src` of the most suspicious
    frame's image that the page shows.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            choose_input(page, uploads, example)
            page.locator("#analyse").click()
            page.locator("#summary").get_by_text("frames used").wait_for()
            page.locator("#prediction").locator(PREDICTION_TEXT).first.wait_for()
            page.locator("#timeline").locator("canvas, svg").first.wait_for()
            page.locator("#gradcam img").first.wait_for()
            page.wait_for_timeout(1000)  # let the plot finish drawing
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            return {
                "label": page.locator("#prediction").inner_text(),
                "summary": page.locator("#summary").inner_text(),
                "explanation": page.locator("#explanation").inner_text(),
                "frame_src": page.locator("#frame img").first.get_attribute("src") or "",
            }
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", default=DEFAULT_EXAMPLE, help="bundled example to answer (examples/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    args = parser.parse_args(argv)
    with served_app() as url:
        shown = capture_demo(url, [], args.out, example=args.example)
    print(f"saved {args.out}\n{shown['label']}\n{shown['summary']}")


if __name__ == "__main__":
    main()
