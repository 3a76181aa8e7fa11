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


def check_decision(label, summary) -> tuple[str, float, float]:
    """The label reads as one statement, "malignant: P(malignant) 0.331 >= threshold 0.305" (or "benign: ... <
    ..."), whose numbers make its decision, over one bar holding P(malignant); the summary states the same.
    Returns (decision, P, threshold) as shown."""
    decision, numbers = label["label"].split(": ", 1)
    name, probability, sign, word, threshold = numbers.split()
    assert decision in ("benign", "malignant") and (name, word) == ("P(malignant)", "threshold")
    assert (sign == ">=") == (decision == "malignant") and sign in (">=", "<")
    assert (float(probability) >= float(threshold)) == (decision == "malignant")
    (bar,) = label["confidences"]
    assert bar["label"] == "P(malignant)" and f"{bar['confidence']:.{len(probability.split('.')[1])}f}" == probability
    assert summary.startswith(f"**{decision}**: {numbers} ")
    return decision, float(probability), float(threshold)
