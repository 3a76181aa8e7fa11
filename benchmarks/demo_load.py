"""Demo under load: `--users` gradio_client users sending a clip at the same moment to the real demo server.

Starts `python app.py` on 127.0.0.1 (loopback only) as a child process, warms it up with one request, then runs
`--rounds` bursts: in each, every user submits one analysis of an example clip at once (half the users one clip,
half the other, default stride 5) and waits for its answer. Per request it records the latency the user sees
(submit to answer), the queue wait the server reports in the summary (time spent waiting for the analyses ahead)
and the analysis time. Prints p50 / p95 / max of each over all requests of all rounds, and the throughput.

Usage:
    python -m benchmarks.demo_load [--model DIR_OR_HUB_ID] [--users 12] [--rounds 2] [--stride 5] [--timeout 900]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import wait
from pathlib import Path

import numpy as np

from benchmarks.demo_latency import git_commit, load_average
from benchmarks.demo_server import DemoServer, analyse, seconds, submit, summary_value

ROOT = Path(__file__).resolve().parents[1]
CLIPS = sorted((ROOT / "examples" / "clips").glob("*.mp4"))
PERCENTILES = (50, 95)


def burst(server: DemoServer, users: int, stride: int, timeout_s: float) -> list[dict[str, float]]:
    """All users submit at once; per request: latency, queue wait and analysis time (s), or an error."""
    started = {}
    jobs = []
    for user in range(users):
        job = submit(server.client, CLIPS[user % len(CLIPS)], stride)
        started[id(job)] = time.perf_counter()
        jobs.append(job)
    finished = {}
    pending = set(jobs)
    deadline = time.perf_counter() + timeout_s
    while pending and time.perf_counter() < deadline:
        done, pending = wait(pending, timeout=0.05, return_when="FIRST_COMPLETED")
        for job in done:
            finished[id(job)] = time.perf_counter()
    rows = []
    for job in jobs:
        if id(job) not in finished or job.exception() is not None:
            rows.append({"error": 1.0})
            continue
        summary = job.result()[4]
        rows.append({
            "latency": finished[id(job)] - started[id(job)],
            "queue wait": seconds(summary, "queue wait"),
            "analysis": seconds(summary, "time"),
        })
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or Hub id (default: the demo's default model)")
    parser.add_argument("--users", type=int, default=12, help="users submitting at the same moment")
    parser.add_argument("--rounds", type=int, default=2, help="bursts")
    parser.add_argument("--stride", type=int, default=5, help="frame stride (the page's default)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a burst may take")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    run_started = time.perf_counter()
    rows, burst_s = [], []
    with tempfile.TemporaryDirectory() as folder, DemoServer(args.model, Path(folder)) as server:
        frames = summary_value(analyse(server.client, CLIPS[0], args.stride, args.timeout)[4], "frames used")
        for _ in range(args.rounds):
            started = time.perf_counter()
            rows += burst(server, args.users, args.stride, args.timeout)
            burst_s.append(time.perf_counter() - started)
    report(args, rows, burst_s, frames, time.perf_counter() - run_started)


def report(args: argparse.Namespace, rows: list, burst_s: list[float], frames: str, wall_s: float) -> None:
    command = ("python -m benchmarks.demo_load " + " ".join(sys.argv[1:])).strip()
    answered = [row for row in rows if "error" not in row]
    print(f"Command: `{command}`; commit {git_commit()}; machine: 2-core CPU, no GPU (load average "
          f"{load_average()} at the end); server: `python app.py` on 127.0.0.1; {args.users} users x {args.rounds} "
          f"bursts, clips {', '.join(clip.name for clip in CLIPS)} (first: {frames}); wall time {wall_s:.0f} s.\n")
    print("| per request (s) | p50 | p95 | max |")
    print("|---|---|---|---|")
    for key in ("latency", "queue wait", "analysis"):
        values = np.array([row[key] for row in answered])
        p50, p95 = np.percentile(values, PERCENTILES)
        print(f"| {key} | {p50:.1f} | {p95:.1f} | {values.max():.1f} |")
    requests = len(answered)
    print(f"\nAnswered {requests} of {len(rows)} requests; bursts took {', '.join(f'{s:.0f}' for s in burst_s)} s "
          f"({requests / sum(burst_s) * 60:.1f} analyses a minute).")


if __name__ == "__main__":
    main()
