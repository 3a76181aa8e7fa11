"""The demo with a lesion model, through gradio_client: lesion curve, outline, and the plain "no lesion" answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.app_client import CLIP_FRAMES, analyse, check_decision, free_port
from tests.helpers.demo_fixtures import save_tiny_classifier, save_tiny_lesion_model, write_clip
from tests.helpers.paths import REPO_ROOT as ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lesion_server(tmp_path_factory):
    """(app module, lesion model, client) for a demo with a tiny classifier and a tiny random lesion model."""
    from gradio_client import Client

    cache = tmp_path_factory.mktemp("gradio_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(cache))
        patch.syspath_prepend(str(ROOT))
        import app
        from usvcl_hf.runtime.clip_prediction import load_model

        root = tmp_path_factory.mktemp("models")
        model, processor = load_model(save_tiny_classifier(root / "classifier"))
        lesion = app.load_demo_lesion_model(str(save_tiny_lesion_model(root / "lesion")))
        demo = app.build_demo(model, processor, "tiny-test-model", lesion)
        _, url, _ = app.launch_demo(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
        client = Client(url, verbose=False, download_files=False)
        yield app, lesion, client
        client.close()
        app.close_demo(demo)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "sweep.mp4")


def frame_pixels(image_output) -> np.ndarray:
    """The image an output shows (sent inline as a PNG data URI)."""
    import base64
    import io

    from PIL import Image

    header, data = image_output["url"].split(",", 1)
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_lesion_clip_is_answered_outlined_and_plotted(lesion_server, clip_path):
    _, lesion, client = lesion_server
    lesion.model.config.lesion_threshold = 0.0  # every frame shows a lesion
    label, plot, frame, cam, summary, _ = analyse(client, [clip_path])
    check_decision(label, summary)
    assert plot["value"]["columns"] == ["time (s)", "probability", "curve"]
    curves = [row[2] for row in plot["value"]["data"]]
    assert curves.count("P(malignant)") == curves.count("P(lesion)") == CLIP_FRAMES
    assert "lesion outlined" in summary and cam["url"]
    shown = frame_pixels(frame)
    assert shown.ndim == 3 and shown.shape[2] >= 3  # RGB: the outline is green on grey
    assert f"lesion frames: {CLIP_FRAMES} of {CLIP_FRAMES}" in summary


def test_clip_without_a_lesion_frame_says_no_lesion(lesion_server, clip_path):
    _, lesion, client = lesion_server
    lesion.model.config.lesion_threshold = 1.0  # no frame reaches it
    label, plot, frame, cam, summary, _ = analyse(client, [clip_path])
    assert label["label"].startswith("no lesion: ") and not label.get("confidences")
    assert summary.startswith("**no lesion**") and "P(malignant) =" not in summary
    assert f"lesion frames: 0 of {CLIP_FRAMES}" in summary
    assert cam is None and frame["url"] and "no lesion found" in summary
    assert len(plot["value"]["data"]) == 2 * CLIP_FRAMES


def test_missing_lesion_model_fails_with_a_clear_message(tmp_path):
    classifier = save_tiny_classifier(tmp_path / "classifier")
    completed = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--model", str(classifier), "--lesion-model",
         str(tmp_path / "no-such-lesion-model")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert completed.returncode != 0
    assert "could not be loaded" in completed.stderr and "--lesion-model none" in completed.stderr


def test_default_lesion_model_is_optional(lesion_server, monkeypatch, tmp_path):
    app, _, _ = lesion_server
    monkeypatch.setattr(app, "APP_DIR", Path(tmp_path))  # no models/ folder here
    assert app.load_demo_lesion_model(app.DEFAULT_LESION_MODEL) is None
    assert app.load_demo_lesion_model("none") is None
