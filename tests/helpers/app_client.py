"""Driving a served demo in tests: a free local port and one analysis request through gradio_client."""

from __future__ import annotations

import socket

from training import synthetic

STRIDE = 5
CLIP_FRAMES = len(range(0, synthetic.FRAME_COUNT, STRIDE))  # 7 kept frames


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def analyse(client, paths, stride=STRIDE, aggregation="mean_probability", crop=True, example=None):
    from gradio_client import handle_file

    files = [handle_file(str(path)) for path in paths] if paths else None
    return client.predict(files, example, stride, aggregation, crop, api_name="/analyse")
