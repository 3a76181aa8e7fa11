"""The demo page in headless Debian chromium (Playwright): upload a clip, run, see label and plot; examples."""

from __future__ import annotations

import importlib.util
import re
import socket
from pathlib import Path

import pytest

from tests.helpers.demo_fixtures import save_tiny_classifier, write_clip
from tests.helpers.paths import REPO_ROOT as ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BUNDLED_MODELS = ("usvcl-lite0-busbra", "usvcl-lesion-busbra", "usvcl-lite0-crops-busbra")
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 120_000
EXAMPLE_IMAGE = "benign_bus_0002-l"

if not CHROMIUM.exists():
    pytest.skip("needs Debian's /usr/bin/chromium", allow_module_level=True)


def load_screenshot_script():
    """docs/make_screenshot.py as a module (it holds the Playwright steps)."""
    spec = importlib.util.spec_from_file_location("make_screenshot", ROOT / "docs" / "make_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio_cache")))
        patch.syspath_prepend(str(ROOT))
        import app
        from usvcl_hf.runtime.clip_prediction import load_model

        model, processor = load_model(save_tiny_classifier(tmp_path_factory.mktemp("tiny_model")))
        demo = app.build_demo(model, processor, "tiny-browser-model")
        _, address, _ = app.launch_demo(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
        yield address
        app.close_demo(demo)


def test_upload_clip_shows_label_and_plot(url, tmp_path):
    script = load_screenshot_script()
    clip = write_clip(tmp_path / "browser_clip.mp4")
    screenshot = tmp_path / "demo.png"
    shown = script.capture_demo(url, [clip], screenshot, timeout_ms=TIMEOUT_MS)
    assert re.search(r"(benign: P\(malignant\) [0-9.]+ < |malignant: P\(malignant\) [0-9.]+ >= )threshold",
                     shown["label"])  # the decision with its numbers, as one statement
    assert "calibrated" in shown["label"]
    assert "frames used: 7" in shown["summary"]  # 32 frames at stride 5
    assert screenshot.stat().st_size > 10_000
    assert shown["frame_src"].startswith("data:image/png;base64,")  # the frame comes inline, not from a server file


def test_example_can_be_run_twice(url, tmp_path):
    """Examples are read from examples/ (never from a cache): the same example works after another request."""
    from playwright.sync_api import sync_playwright

    script = load_screenshot_script()
    clip = write_clip(tmp_path / "between.mp4", shift=2)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=script.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=script.VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            summary = page.locator("#summary")
            for step in ("example", "clip", "example"):
                if step == "example":
                    page.get_by_text(EXAMPLE_IMAGE, exact=True).first.click()
                    page.wait_for_function(
                        "name => document.querySelector('#example input').value === name", arg=EXAMPLE_IMAGE
                    )
                    expected = f"image {EXAMPLE_IMAGE}.png"
                else:
                    page.locator("#upload input[type=file]").set_input_files(str(clip))
                    page.locator("#upload").get_by_text(clip.stem).first.wait_for()
                    expected = "25.0 fps"
                page.locator("#analyse").click()
                summary.get_by_text(expected).wait_for()
        finally:
            browser.close()


@pytest.mark.skipif(not all((ROOT / "models" / name).is_dir() for name in BUNDLED_MODELS),
                    reason="the bundled models are not exported")
def test_the_real_page_answers_the_screenshot_example(tmp_path):
    """`python app.py` with its defaults answers the example docs/screenshot_demo.png shows, as the screenshot
    shows it: two views, the lesion outlined, P over time, and every model named on the page and in the summary."""
    script = load_screenshot_script()
    with script.served_app() as address:
        shown = script.capture_demo(address, [], tmp_path / "demo.png", timeout_ms=TIMEOUT_MS,
                                    example=script.DEFAULT_EXAMPLE)
    assert re.search(r"(benign|malignant): P\(malignant\) [0-9.]+ (<|>=) threshold [0-9.]+", shown["label"])
    assert "lesion outlined" in shown["summary"] and "mean of whole image and lesion crop" in shown["summary"]
    assert "10.0 fps" in shown["summary"]  # the example clip, not a still
    for name in BUNDLED_MODELS:
        assert f"models/{name}" in shown["summary"] and f"models/{name}" in shown["explanation"]
    assert "initialised from ImageNet weights" in shown["explanation"]
    assert shown["frame_src"].startswith("data:image/png;base64,")
