"""Save a screenshot of the demo analysing an example clip (docs/screenshot_demo.png).

Starts the demo in this process with the given model, opens it in headless Debian chromium through Playwright,
uploads a clip, presses "Analyse", waits for the prediction and the plot, and saves a full-page PNG.

Usage:
    python docs/make_screenshot.py [--model models/usvcl-lite0-busbra] [--clip examples/clips/...mp4]
                                   [--out docs/screenshot_demo.png]
"""

from __future__ import annotations

import argparse
import socket
import sys
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
DEFAULT_CLIP = ROOT / "examples" / "clips" / "malignant_bus_0005-l_sweep.mp4"
DEFAULT_OUT = ROOT / "docs" / "screenshot_demo.png"
PREDICTION_TEXT = "text=/benign|malignant/"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def capture_demo(url: str, uploads: list[Path], out: Path, timeout_ms: int = TIMEOUT_MS) -> dict[str, str]:
    """Upload `uploads` on the demo page at `url`, run it, wait for label and plot, save a screenshot to `out`.

    Returns the label text, the summary text and the `src` of the most suspicious frame's image that the page shows.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            page.locator("#upload input[type=file]").set_input_files([str(path) for path in uploads])
            page.locator("#upload").get_by_text(uploads[0].stem).first.wait_for()
            page.locator("#analyse").click()
            page.locator("#summary").get_by_text("frames used").wait_for()
            page.locator("#prediction").locator(PREDICTION_TEXT).first.wait_for()
            page.locator("#timeline").locator("canvas, svg").first.wait_for()
            page.locator("#gradcam img").first.wait_for()
            page.wait_for_timeout(500)  # let the plot finish drawing
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            return {
                "label": page.locator("#prediction").inner_text(),
                "summary": page.locator("#summary").inner_text(),
                "frame_src": page.locator("#frame img").first.get_attribute("src") or "",
            }
        finally:
            browser.close()


def main() -> None:
    """Command-line entry point."""
    sys.path.insert(0, str(ROOT))
    import app
    from usvcl_hf.runtime.clip_prediction import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=app.DEFAULT_MODEL, help="model folder or Hub id")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="clip (or image) to upload")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    args = parser.parse_args()
    if not Path(args.model).exists() and args.model == app.DEFAULT_MODEL:
        raise SystemExit(app.missing_model_message(args.model))
    model, processor = load_model(args.model)
    with app.private_gradio_folder():
        demo = app.build_demo(model, processor, args.model)
        _, url, _ = app.launch_demo(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
        try:
            shown = capture_demo(url, [args.clip], args.out)
        finally:
            app.close_demo(demo)
    print(f"saved {args.out}\n{shown['label']}\n{shown['summary']}")


if __name__ == "__main__":
    main()
