"""Demo memory: peak RSS of the real demo server (`python app.py`) for the worst clips within its limits.

Starts `python app.py` on 127.0.0.1 (loopback only) as a child process, warms it up with one example clip, then
sends each clip below through gradio_client (frame stride 1, the most the page allows) `--repeats` times. Around
every request it resets the server's peak-RSS counter (`/proc/PID/clear_refs`), reads the peak (`VmHWM`) when the
answer is in, and the resident size (`VmRSS`) a moment later, all relative to the idle server after the warm-up:

- largest frames: 4096 x 4096 (the frame-size limit), 120 frames;
- most decoded pixels: 894 x 894 frames (just below the size that is reduced while decoding), 590 frames: every 2nd
  is kept, 295 frames, the most the decode budget (300 x 1024 x 768 pixels) allows at that size;
- longest clip: 120 s (the length limit) at 25 fps, 320 x 240: 3,000 frames, sampled down to 300.

Goal (issue #20): peak under 1.5 GB above idle, and the resident size back near idle after each request.

Usage:
    python -m benchmarks.demo_memory [--model DIR_OR_HUB_ID] [--repeats 2] [--timeout 900]
Linux only (reads /proc). Prints a Markdown table; the clips are made on the fly in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from benchmarks.demo_latency import git_commit, load_average
from benchmarks.demo_server import DemoServer, analyse, summary_value

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
GOAL_MB = 1536
SETTLE_S = 2.0  # wait after an answer before reading the resident size
CLIPS = {  # name: (width, height, frames)
    "largest frames (4096 x 4096, 120 frames)": (4096, 4096, 120),
    "most decoded pixels (894 x 894, 590 frames)": (894, 894, 590),
    "longest clip (120 s at 25 fps, 320 x 240)": (320, 240, 120 * FPS),
}
KIB = 1024


def write_sweep(path: Path, width: int, height: int, frames: int) -> Path:
    """An H.264 clip of a bright square sweeping over a grey gradient, encoded one frame at a time."""
    import av

    rows, columns = np.mgrid[0:height, 0:width]
    background = (30 + (rows + columns) * 60 // (height + width)).astype(np.uint8)  # (H, W)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS), options={"preset": "ultrafast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = background.copy()
            left = index * (width // 2) // frames
            frame[height // 4 : height // 2, left : left + width // 4] = 220
            video_frame = av.VideoFrame.from_ndarray(frame, format="gray").reformat(format="yuv420p")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident size since the last reset) of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current resident size (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def measure(server: DemoServer, clip: Path, timeout_s: float) -> dict[str, float]:
    """One request: peak and after-request resident size (MiB), wall time, frames used."""
    reset_peak(server.pid)
    started = time.perf_counter()
    summary = analyse(server.client, clip, stride=1, timeout_s=timeout_s)[4]
    wall = time.perf_counter() - started
    peak = memory_kib(server.pid)["VmHWM"]
    time.sleep(SETTLE_S)
    after = memory_kib(server.pid)["VmRSS"]
    return {"peak": peak / KIB, "after": after / KIB, "wall": wall, "frames": summary_value(summary, "frames used")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or Hub id (default: the demo's default model)")
    parser.add_argument("--repeats", type=int, default=2, help="requests per clip")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one request may take")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    run_started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        clips = {name: write_sweep(Path(folder) / f"clip{index}.mp4", *size)
                 for index, (name, size) in enumerate(CLIPS.items())}
        with DemoServer(args.model, Path(folder) / "server") as server:
            analyse(server.client, ROOT / "examples" / "clips" / "benign_bus_0007-l_sweep.mp4", stride=1,
                    timeout_s=args.timeout)  # warm-up
            time.sleep(SETTLE_S)
            idle = memory_kib(server.pid)["VmRSS"] / KIB
            rows = [(name, measure(server, clip, args.timeout)) for name, clip in clips.items()
                    for _ in range(args.repeats)]
            final = memory_kib(server.pid)["VmRSS"] / KIB
            os.kill(server.pid, signal.SIGTERM)
    report(args, idle, final, rows, time.perf_counter() - run_started)


def report(args: argparse.Namespace, idle: float, final: float, rows: list, wall_s: float) -> None:
    command = ("python -m benchmarks.demo_memory " + " ".join(sys.argv[1:])).strip()
    print(f"Command: `{command}`; commit {git_commit()}; machine: 2-core CPU, no GPU (load average "
          f"{load_average()} at the end); server: `python app.py` on 127.0.0.1, frame stride 1; idle RSS after "
          f"the warm-up {idle:.0f} MiB; wall time {wall_s:.0f} s.\n")
    print("| clip | frames used | peak RSS above idle (MiB) | RSS above idle after the answer (MiB) | request (s) |")
    print("|---|---|---|---|---|")
    for name, row in rows:
        print(f"| {name} | {row['frames']} | {row['peak'] - idle:.0f} | {row['after'] - idle:.0f} | "
              f"{row['wall']:.1f} |")
    worst = max(row["peak"] - idle for _, row in rows)
    print(f"\nWorst peak above idle: {worst:.0f} MiB (goal < {GOAL_MB} MiB: {'met' if worst < GOAL_MB else 'MISSED'});"
          f" RSS after all requests: {final - idle:+.0f} MiB against idle.")


if __name__ == "__main__":
    main()
