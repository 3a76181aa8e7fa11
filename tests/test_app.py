"""The Gradio demo served on 127.0.0.1 with a tiny model, driven through gradio_client."""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import wait
from pathlib import Path

import pytest

from tests import synthetic
from tests.demo_fixtures import save_tiny_classifier, write_clip, write_png

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STRIDE = 5
CLIP_FRAMES = len(range(0, synthetic.FRAME_COUNT, STRIDE))  # 7 kept frames
CONCURRENT_REQUESTS = 8
REQUEST_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(app module, demo, url) for a demo with a tiny model, its Gradio cache in a temp folder."""
    from gradio_client import Client

    cache = tmp_path_factory.mktemp("gradio_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(cache))
        patch.syspath_prepend(str(ROOT))
        import app
        from usvcl_hf.clip_prediction import load_model

        model, processor = load_model(save_tiny_classifier(tmp_path_factory.mktemp("tiny_model")))
        demo = app.build_demo(model, processor, "tiny-test-model")
        _, url, _ = app.launch_demo(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
        client = Client(url, verbose=False, download_files=False)
        yield app, demo, client, cache
        client.close()
        demo.close()


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "sweep.mp4")


def analyse(client, paths, stride=STRIDE, aggregation="mean_probability", crop=True):
    from gradio_client import handle_file

    return client.predict(
        [handle_file(str(path)) for path in paths], stride, aggregation, crop, api_name="/analyse"
    )


def check_answer(outputs, frame_count):
    label, plot, frame, cam, summary, upload = outputs
    assert label["label"] in ("benign", "malignant")
    confidences = {item["label"]: item["confidence"] for item in label["confidences"]}
    assert set(confidences) == {"benign", "malignant"}
    assert sum(confidences.values()) == pytest.approx(1.0)
    assert len(plot["value"]["data"]) == frame_count
    assert "P(malignant)" in plot["value"]["columns"]
    assert frame["value"] and cam["value"]
    assert f"frames used: {frame_count}" in summary and "tiny-test-model" in summary
    assert upload is None


def test_clip(server, clip_path):
    _, _, client, _ = server
    outputs = analyse(client, [clip_path])
    check_answer(outputs, CLIP_FRAMES)
    assert outputs[1]["x"] == "time (s)"
    assert f"stride {STRIDE}" in outputs[4]


def test_images(server, tmp_path):
    _, _, client, _ = server
    check_answer(analyse(client, [write_png(tmp_path / "one.png")]), 1)
    stills = [write_png(tmp_path / f"still{index}.png", seed=index) for index in range(3)]
    outputs = analyse(client, stills, aggregation="max_probability")
    check_answer(outputs, 3)
    assert outputs[1]["x"] == "frame"


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("text.mp4", lambda path, clip: synthetic.write_text_as_mp4(path), "cannot decode"),
        ("truncated.mp4", lambda path, clip: synthetic.write_truncated(path, clip), ""),
        ("nopixels.dcm", lambda path, clip: synthetic.write_dicom(path, with_pixels=False), "no pixel data"),
    ],
)
def test_bad_input_is_reported_and_the_app_keeps_serving(server, clip_path, tmp_path, name, make, reason):
    from gradio_client.exceptions import AppError

    _, _, client, cache = server
    bad = make(tmp_path / name, clip_path)
    with pytest.raises(AppError) as caught:
        analyse(client, [bad])
    message = str(caught.value)
    assert f"Cannot analyse {name}:" in message and reason in message
    assert str(cache) not in message  # the server's folders are not shown
    check_answer(analyse(client, [clip_path]), CLIP_FRAMES)


def test_a_clip_over_the_frame_limit_is_sampled_not_refused(server, clip_path, monkeypatch):
    app, _, client, _ = server
    monkeypatch.setattr(app, "MAX_FRAMES", 3)
    outputs = analyse(client, [clip_path])
    check_answer(outputs, 3)
    assert "stride 11" in outputs[4]  # 32 frames: every 11th keeps 3, over the whole clip


def test_uploads_are_deleted_after_the_request(server, tmp_path):
    from gradio_client.exceptions import AppError

    _, _, client, cache = server
    good = write_clip(tmp_path / "private_upload.mp4", shift=3)
    analyse(client, [good])
    bad = synthetic.write_text_as_mp4(tmp_path / "private_bad.mp4")
    with pytest.raises(AppError):
        analyse(client, [bad])
    leftovers = [path for path in Path(cache).rglob("private_*")]
    assert leftovers == []


def test_concurrent_requests_all_get_answers(server, tmp_path):
    from gradio_client import handle_file

    _, _, client, _ = server
    clips = [write_clip(tmp_path / f"clip{index}.mp4", shift=index + 1) for index in range(CONCURRENT_REQUESTS)]
    jobs = [
        client.submit([handle_file(str(path))], STRIDE, "mean_logit", True, api_name="/analyse") for path in clips
    ]
    done, _ = wait(jobs, timeout=REQUEST_TIMEOUT_S)
    assert len(done) == CONCURRENT_REQUESTS
    for job in jobs:
        check_answer(job.result(), CLIP_FRAMES)


def test_missing_model_fails_with_a_clear_message(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--model", str(tmp_path / "no-such-model")],
        capture_output=True, text=True, timeout=REQUEST_TIMEOUT_S, cwd=tmp_path,
    )
    assert completed.returncode != 0
    assert "was not found" in completed.stderr and "--model" in completed.stderr


def test_delete_uploads_keeps_example_copies_and_outside_files(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import app

    cache, outside = tmp_path / "cache", tmp_path / "outside"
    example = ROOT / "examples" / "images" / "benign_bus_0002-l.png"
    (cache / "sha1").mkdir(parents=True)
    (cache / "sha2").mkdir()
    upload = write_png(cache / "sha1" / "mine.png")
    example_copy = cache / "sha2" / example.name
    example_copy.write_bytes(example.read_bytes())
    outside.mkdir()
    foreign = write_png(outside / "keep.png")
    app.delete_uploads([str(upload), str(example_copy), str(foreign)], str(cache), [example])
    assert not upload.exists() and not (cache / "sha1").exists()
    assert example_copy.exists() and foreign.exists()
