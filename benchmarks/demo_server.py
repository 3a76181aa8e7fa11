"""The real demo server (`python app.py` on 127.0.0.1) as a child process, for the demo benchmarks."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only
START_TIMEOUT_S = 300.0
AGGREGATION = "mean_probability"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


class DemoServer:
    """`python app.py [--model M]` on a free loopback port, its temporary files under `folder`; a gradio_client."""

    def __init__(self, model: str | None, folder: Path) -> None:
        self.model, self.folder = model, folder
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/"
        self.process: subprocess.Popen | None = None
        self.client = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> DemoServer:
        from gradio_client import Client

        self.folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(ROOT / "app.py"), "--host", HOST, "--port", str(self.port)]
        if self.model:
            command += ["--model", self.model]
        env = {key: value for key, value in os.environ.items() if key != "GRADIO_TEMP_DIR"}
        env["TMPDIR"] = str(self.folder)
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the demo server did not start: {' '.join(command)}")
            time.sleep(0.5)
        self.client = Client(self.url, verbose=False, download_files=False)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.client is not None:
            self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def submit(client, clip: Path, stride: int):
    """Queue one analysis of `clip` (uploaded by the client) on the demo's /analyse endpoint; a gradio_client Job."""
    from gradio_client import handle_file

    return client.submit([handle_file(str(clip))], None, stride, AGGREGATION, True, api_name="/analyse")


def analyse(client, clip: Path, stride: int, timeout_s: float) -> tuple:
    """One analysis, waited for; the endpoint's outputs."""
    return submit(client, clip, stride).result(timeout=timeout_s)


def summary_value(summary: str, key: str) -> str:
    """The text after `- key: ` in the demo's Markdown summary, up to the line's end."""
    match = re.search(rf"^- {re.escape(key)}: (.*)$", summary, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"no '{key}' line in the summary:\n{summary}")
    return match.group(1)


def seconds(summary: str, key: str) -> float:
    """The first number of seconds on a summary line, e.g. `- queue wait: 1.23 s` -> 1.23."""
    return float(summary_value(summary, key).split(" s")[0])
