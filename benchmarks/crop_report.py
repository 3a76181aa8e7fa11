"""How well detect_imaging_region crops real clips: area kept, static border removed, motion covered.

For each clip (all frames, stride 1): the detected box; the share of the frame it keeps; whether it removes
anything; the share of the clip's "moving" pixels (temporal range above CHANGE_LEVEL) that lie inside the box
(coverage, should be ~1); and the mean temporal range outside vs inside the box (outside should be ~0: static).

    python -m benchmarks.crop_report --input ../shared/data/covid_blues_lus_videos/lus_videos
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from usvcl_hf.runtime.imaging_region import CHANGE_LEVEL
from usvcl_hf.runtime.video import SUPPORTED_SUFFIXES, detect_imaging_region, read_clip

STATIC_OUTSIDE_LEVEL = 1.0  # mean temporal range (grey levels) below which the removed border counts as static


def measure_clip(path: Path, max_frames: int | None) -> dict[str, float]:
    """Crop statistics of one clip."""
    frames = read_clip(path, frame_stride=1, max_frames=max_frames).frames  # (T, H, W)
    top, left, bottom, right = detect_imaging_region(frames)
    temporal_range = frames.max(axis=0).astype(np.int16) - frames.min(axis=0)  # (H, W)
    inside = np.zeros(temporal_range.shape, dtype=bool)
    inside[top:bottom, left:right] = True
    moving = temporal_range > CHANGE_LEVEL
    return {
        "area_share": float(inside.mean()),
        "removes_border": float(not inside.all()),
        "motion_coverage": float(moving[inside].sum() / max(moving.sum(), 1)),
        "outside_range": float(temporal_range[~inside].mean()) if (~inside).any() else 0.0,
        "inside_range": float(temporal_range[inside].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    """Print a Markdown summary of the crop statistics over all clips in --input."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="folder of clips (searched recursively)")
    parser.add_argument("--max-frames", type=int, default=None, help="frames read per clip (default: all)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    paths = sorted(path for path in Path(args.input).rglob("*") if path.suffix.lower() in SUPPORTED_SUFFIXES)
    stats = [measure_clip(path, args.max_frames) for path in paths]
    removed = [item for item in stats if item["removes_border"]]
    static_removed = [item for item in removed if item["outside_range"] < STATIC_OUTSIDE_LEVEL]
    print(f"| metric ({len(stats)} clips) | value |\n|---|---|")
    print(f"| clips whose crop removes a border | {len(removed)} / {len(stats)} |")
    print(f"| ... of which the removed border is static (mean range < {STATIC_OUTSIDE_LEVEL}) | "
          f"{len(static_removed)} / {len(removed)} |")
    for key, label in [("area_share", "cropped area share of the frame"),
                       ("motion_coverage", "share of moving pixels inside the crop"),
                       ("outside_range", "mean temporal range outside the crop (grey levels)"),
                       ("inside_range", "mean temporal range inside the crop (grey levels)")]:
        values = np.array([item[key] for item in stats])
        print(f"| {label}: median (min-max) | {np.median(values):.3f} ({values.min():.3f}-{values.max():.3f}) |")
    print(f"\nwall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
