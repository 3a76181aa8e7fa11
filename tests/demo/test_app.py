"""The Gradio demo served on 127.0.0.1 with a tiny model, driven through gradio_client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import wait
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers.app_client import CLIP_FRAMES, STRIDE, analyse, check_decision, free_port
from tests.helpers.demo_fixtures import save_tiny_classifier, write_clip, write_png
from tests.helpers.paths import REPO_ROOT
from training import synthetic

pytestmark = pytest.mark.slow

ROOT = REPO_ROOT
CONCURRENT_REQUESTS = 8
SAME_FILE_USERS = 12
REQUEST_TIMEOUT_S = 180
TEST_MAX_AGE_S = 4.0  # the test server sweeps uploads older than this ...
TEST_SWEEP_EVERY_S = 0.5  # ... this often
WAIT_S = 90.0  # upper bound when waiting for the server to do something (not a timing check)


def wait_until(condition, timeout_s: float = WAIT_S, every_s: float = 0.2) -> bool:
    """Poll `condition()` until it is true or `timeout_s` passed; its last value."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(every_s)
    return True


def files_under(folder: Path) -> list[Path]:
    return [path for path in Path(folder).rglob("*") if path.is_file()]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo with a tiny model on 127.0.0.1: app module, demo, client, Gradio's cache, request folder, model."""
    from gradio_client import Client

    cache = tmp_path_factory.mktemp("gradio_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(cache))
        patch.syspath_prepend(str(ROOT))
        import app
        from demo.storage import DemoStorage
        from usvcl_hf.runtime.clip_prediction import load_model

        model, processor = load_model(save_tiny_classifier(tmp_path_factory.mktemp("tiny_model")))
        requests = tmp_path_factory.mktemp("requests")
        storage = DemoStorage(uploads=cache, requests=requests, max_age_s=TEST_MAX_AGE_S, every_s=TEST_SWEEP_EVERY_S)
        demo = app.build_demo(model, processor, "tiny-test-model", storage=storage)
        _, url, _ = app.launch_demo(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
        client = Client(url, verbose=False, download_files=False)
        yield SimpleNamespace(app=app, demo=demo, client=client, cache=cache, requests=requests, model=model,
                              processor=processor, url=url)
        client.close()
        app.close_demo(demo)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "sweep.mp4")


def check_answer(outputs, frame_count, model_name="tiny-test-model"):
    label, plot, frame, cam, summary, upload = outputs
    check_decision(label, summary)
    assert len(plot["value"]["data"]) == frame_count
    assert "P(malignant)" in plot["value"]["columns"]
    assert frame["url"].startswith("data:image/png;base64,")  # sent inline, not as a server file
    assert cam["url"].startswith("data:image/png;base64,")
    assert f"frames used: {frame_count}" in summary and model_name in summary
    assert upload is None


def test_clip(server, clip_path):
    client = server.client
    outputs = analyse(client, [clip_path])
    check_answer(outputs, CLIP_FRAMES)
    assert outputs[1]["x"] == "time (s)"
    assert f"stride {STRIDE}" in outputs[4]


def test_images(server, tmp_path):
    client = server.client
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

    client, cache = server.client, server.cache
    bad = make(tmp_path / name, clip_path)
    with pytest.raises(AppError) as caught:
        analyse(client, [bad])
    message = str(caught.value)
    assert f"Cannot analyse {name}:" in message and reason in message
    assert str(cache) not in message  # the server's folders are not shown
    check_answer(analyse(client, [clip_path]), CLIP_FRAMES)


def test_a_clip_over_the_frame_limit_is_sampled_not_refused(server, clip_path, monkeypatch):
    app, client = server.app, server.client
    monkeypatch.setattr(app, "MAX_FRAMES", 3)
    outputs = analyse(client, [clip_path])
    check_answer(outputs, 3)
    assert "stride 11" in outputs[4]  # 32 frames: every 11th keeps 3, over the whole clip


def test_concurrent_requests_all_get_answers(server, tmp_path):
    from gradio_client import handle_file

    client = server.client
    clips = [write_clip(tmp_path / f"clip{index}.mp4", shift=index + 1) for index in range(CONCURRENT_REQUESTS)]
    jobs = [
        client.submit([handle_file(str(path))], None, STRIDE, "mean_logit", True, api_name="/analyse")
        for path in clips
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


def test_same_file_from_many_users_at_once_all_get_answers(server, clip_path):
    """Equal uploads share one path in Gradio's cache: each request works on its own copy, none deletes another's."""
    from gradio_client import handle_file

    client = server.client
    jobs = [
        client.submit([handle_file(str(clip_path))], None, STRIDE, "mean_probability", True, api_name="/analyse")
        for _ in range(SAME_FILE_USERS)
    ]
    done, _ = wait(jobs, timeout=REQUEST_TIMEOUT_S)
    assert len(done) == SAME_FILE_USERS
    for job in jobs:
        check_answer(job.result(), CLIP_FRAMES)
    waits = [float(job.result()[4].split("queue wait: ")[1].split(" s")[0]) for job in jobs]
    assert max(waits) > 0.0  # they were served one after another, not at once
    assert files_under(server.requests) == []  # every working copy is gone when its analysis ends


def test_the_same_upload_sent_twice_gets_two_answers(server, clip_path):
    """A double submit of one uploaded path (API client, or a second click) is answered twice."""
    client = server.client
    path = upload_raw(server.url, "twice.mp4", clip_path.read_bytes())
    file_data = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "twice.mp4"}
    jobs = [client.submit([file_data], None, STRIDE, "mean_probability", True, api_name="/analyse") for _ in "ab"]
    done, _ = wait(jobs, timeout=REQUEST_TIMEOUT_S)
    assert len(done) == 2
    for job in jobs:
        check_answer(job.result(), CLIP_FRAMES)


def upload_raw(url: str, name: str, content: bytes) -> str:
    """POST one file to Gradio's upload route as a browser does; the stored path."""
    import httpx

    response = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": (name, content)}, timeout=60)
    response.raise_for_status()
    return response.json()[0]


def test_examples_work_after_a_full_cache_sweep(server):
    """Examples are read from examples/, not from Gradio's cache: wiping the cache does not break them."""
    from demo.storage import sweep

    app, client = server.app, server.client
    name = "benign_bus_0002-l"
    assert name in app.example_files()
    check_answer(analyse(client, [], example=name), 1)
    sweep(server.cache, max_age_s=-1.0)  # what the periodic sweep does to everything, at once
    assert files_under(server.cache) == []
    outputs = analyse(client, [], example=name)
    check_answer(outputs, 1)
    assert f"image {name}.png" in outputs[4]


def api_text(value) -> str:
    return json.dumps(value, default=str)


def test_no_server_paths_in_api_answers(server, clip_path):
    client = server.client
    answers = [analyse(client, [clip_path]), analyse(client, [], example="benign_bus_0002-l")]
    answers.append(client.predict(0, api_name="/load_example"))
    for answer in answers:
        text = api_text(answer)
        for folder in (server.cache, server.requests, ROOT, Path("/tmp")):
            assert str(folder) not in text
        assert '"path"' not in text


def test_outputs_are_not_written_to_the_server(server, clip_path):
    """The frame and the Grad-CAM come back inline; nothing but the upload itself (and Gradio's 0-byte temp file
    per analysed file, swept with it) is in Gradio's folder after an analysis."""
    client, cache = server.client, server.cache
    before = set(files_under(cache))
    analyse(client, [clip_path])
    new = [path for path in files_under(cache) if path not in before]
    assert all(path.name == clip_path.name or path.stat().st_size == 0 for path in new), new


def test_uploads_are_swept_analysed_or_not(server, clip_path, tmp_path):
    """Analysed uploads, uploads never analysed and Gradio's 0-byte temp files all go within the sweep age."""
    app, client, cache = server.app, server.client, server.cache
    assert app.UPLOAD_MAX_AGE_S + app.SWEEP_EVERY_S <= 60  # the page says: within a minute
    analyse(client, [write_clip(tmp_path / "private_upload.mp4", shift=3)])
    never_analysed = Path(upload_raw(server.url, "private_never.mp4", clip_path.read_bytes()))
    assert never_analysed.is_file()
    assert wait_until(lambda: not files_under(cache))
    assert files_under(server.requests) == []


def test_dot_dot_upload_is_refused_before_it_is_stored(server):
    """Gradio answers 400 for a file named `..` but keeps its bytes on disk; the guard stops it before."""
    import httpx

    marker = os.urandom(64) * 1024  # 64 KiB that no other file has
    response = httpx.post(
        f"{server.url.rstrip('/')}/gradio_api/upload",
        files=[("files", ("fine.png", b"first part")), ("files", ("..", marker))], timeout=60,
    )
    assert response.status_code == 400 and "Invalid file name" in response.text
    assert not [path for path in files_under(server.cache) if path.read_bytes() == marker]
    assert not [path for path in files_under(server.cache) if path.read_bytes() == b"first part"]
    check_answer(analyse(server.client, [], example="benign_bus_0002-l"), 1)  # still serving


@pytest.mark.parametrize("name", ["clip.mpeg", "clip.mpg", "clip.m4v", "cine.dicom", "cine"])
def test_every_format_the_reader_reads_is_accepted(server, tmp_path, name):
    path = tmp_path / name
    if name.startswith("clip"):
        synthetic.write_video(path)
    else:
        synthetic.write_dicom(tmp_path / "cine.dcm").rename(path)
    check_answer(analyse(server.client, [path]), CLIP_FRAMES)


def test_accepted_types_are_the_readers(server):
    from usvcl_hf.runtime.video import SUPPORTED_SUFFIXES

    assert set(server.app.FILE_TYPES) == SUPPORTED_SUFFIXES


def test_label_shows_the_decision_near_the_threshold(server, clip_path):
    """P(malignant) between the threshold and 0.5: the label shows the decision, as the summary does."""
    from usvcl_hf.runtime.clip_prediction import predict_clip

    model, config = server.model, server.model.config
    malignancy = predict_clip(model, server.processor, clip_path, frame_stride=STRIDE,
                              clip_aggregation="mean_probability").malignancy
    assert malignancy != 0.5
    original = config.decision_threshold
    config.decision_threshold = malignancy - 1e-3 if malignancy < 0.5 else malignancy + 1e-3
    try:
        label, *_, summary, _ = analyse(server.client, [clip_path])
    finally:
        config.decision_threshold = original
    decision, probability, _ = check_decision(label, summary)
    likelier = "malignant" if probability >= 0.5 else "benign"
    assert decision != likelier  # the case in question: the decision is not the likelier class, and says why


def test_sigterm_leaves_no_files(tmp_path):
    """`python app.py` stopped by SIGTERM after an analysis and an upload never analysed leaves nothing behind."""
    from gradio_client import Client

    model = save_tiny_classifier(tmp_path / "model")
    temp = tmp_path / "temp"
    temp.mkdir()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "GRADIO_TEMP_DIR"}
    env["TMPDIR"] = str(temp)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--model", str(model), "--port", str(port), "--lesion-model", "none"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        assert wait_until(lambda: port_open(port), timeout_s=REQUEST_TIMEOUT_S), "server did not start"
        client = Client(url, verbose=False, download_files=False)
        check_answer(analyse(client, [write_clip(tmp_path / "analysed.mp4")]), CLIP_FRAMES, str(model))
        upload_raw(url, "never.mp4", write_clip(tmp_path / "never.mp4", shift=2).read_bytes())
        client.close()
        assert files_under(temp)  # the upload is there while the server runs
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=REQUEST_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert files_under(temp) == [], process.stdout.read()  # (Gradio's empty gradio/vibe_edit_history/ may stay)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
