"""Clip decoding to grey frames: PyAV's swscale `to_ndarray(format="gray")` vs
`usvcl_hf.runtime.pyav_frames.frame_to_grey`.

    python -m benchmarks.grey_conversion [--clips DIR] [--count 20]

Each clip is opened and decoded with frame threading (as `read_clip` does) and every frame converted, once per
method, interleaved over rounds (fastest round kept). Outputs are checked to be identical. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from usvcl_hf.runtime.pyav_frames import frame_to_grey

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "covid_blues_lus_videos" / "lus_videos"
ROUNDS = 3
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".mpeg"}


def swscale_grey(frame: av.VideoFrame) -> np.ndarray:
    """PyAV's own grey conversion."""
    return frame.to_ndarray(format="gray")


def decode_clips(paths: list[Path], convert: Callable) -> tuple[list[np.ndarray], float]:
    """Decode every clip and convert every frame; the grey frames and the seconds it took."""
    started = time.perf_counter()
    greys = []
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # as read_clip decodes
            greys += [convert(frame) for frame in container.decode(stream)]
    return greys, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    """Time both methods and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="folder of video clips")
    parser.add_argument("--count", type=int, default=20, help="clips to use (sorted by name)")
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.clips.iterdir() if p.suffix in VIDEO_SUFFIXES)[: args.count]
    best = {"swscale": float("inf"), "luma": float("inf")}
    for _ in range(ROUNDS):
        reference, seconds = decode_clips(paths, swscale_grey)
        best["swscale"] = min(best["swscale"], seconds)
        fast, seconds = decode_clips(paths, frame_to_grey)
        best["luma"] = min(best["luma"], seconds)
    if not all(np.array_equal(a, b) for a, b in zip(reference, fast, strict=True)):
        raise SystemExit("frame_to_grey differs from swscale's grey: do not trust the speed-up")
    frames = len(reference)
    print(f"| decode + grey, {frames} frames of {len(paths)} clips, 1 process | frames/s |")
    print("|---|---|")
    print(f"| swscale `to_ndarray(format=\"gray\")` | {frames / best['swscale']:,.0f} |")
    print(f"| `frame_to_grey` (luma plane + lookup table) | {frames / best['luma']:,.0f} |")
    print(f"| ratio | {best['swscale'] / best['luma']:.1f}x |")
    print("Outputs identical on every frame.")


if __name__ == "__main__":
    main()
