"""Where the ultrasound image is in a clip's frames: the box that moves, not the scanner's static overlays.

`detect_imaging_region` is what `read_clip(..., crop=True)` and `predict_clip` cut frames to (pure numpy).
"""

from __future__ import annotations

import numpy as np

# Imaging-region detection: a pixel "changes" when its temporal range (max - min over the clip) and the mean
# range of its CHANGE_BLOCK x CHANGE_BLOCK neighbourhood both exceed CHANGE_LEVEL grey levels (single noisy
# pixels and compression flicker on static overlays average out). A row/column belongs to the region when at least
# MIN_CHANGING_SHARE of it changes; the region is the longest run of such rows/columns, bridging gaps of up to
# MAX_GAP pixels. A pixel is "non-black" above BLACK_LEVEL.
CHANGE_BLOCK = 9
CHANGE_LEVEL = 2.0
MIN_CHANGING_SHARE = 0.05
MAX_GAP = 4
BLACK_LEVEL = 10
# Below this share of the frame, the moving area is treated as noise and the non-black box is used instead.
MIN_REGION_SHARE = 0.02


def detect_imaging_region(frames: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(top, left, bottom, right)`` (bottom/right exclusive) of the imaging region.

    For a clip, the region is where pixels change over time: a pixel's temporal range (max - min) and the
    mean range of its small neighbourhood must both exceed CHANGE_LEVEL. Rows and columns with at least
    MIN_CHANGING_SHARE changing pixels are kept, and the longest run of them (small gaps bridged) gives the
    box, so static overlays (scanner UI, text, colour bars, black borders) and small moving UI elements apart
    from the image fall outside. A single frame, or a clip whose moving area is too small, falls back to the
    box of non-black pixels; an all-black input gives the full frame.
    """
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[np.newaxis]  # (H, W) -> (1, H, W)
    height, width = frames.shape[1:3]
    if len(frames) > 1:
        temporal_range = frames.max(axis=0).astype(np.int16) - frames.min(axis=0)  # (H, W)
        changing = (temporal_range > CHANGE_LEVEL) & (block_mean(temporal_range, CHANGE_BLOCK) > CHANGE_LEVEL)
        box = _dense_box(changing)  # (H, W) mask: the pixel and its neighbourhood change
        if box is not None and _box_area(box) >= MIN_REGION_SHARE * height * width:
            return box
    box = _dense_box(frames.max(axis=0) > BLACK_LEVEL)  # (H, W) mask of non-black pixels
    return box if box is not None else (0, 0, height, width)


def block_mean(values: np.ndarray, block: int) -> np.ndarray:
    """Mean of ``values`` (H, W) over a ``block`` x ``block`` window centred on each pixel (edges replicated)."""
    half = block // 2
    padded = np.pad(values.astype(np.float64), half, mode="edge")  # (H + 2*half, W + 2*half)
    integral = np.pad(padded.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))  # summed-area table
    height, width = values.shape
    window_sum = (
        integral[block:block + height, block:block + width]
        - integral[:height, block:block + width]
        - integral[block:block + height, :width]
        + integral[:height, :width]
    )  # (H, W)
    return window_sum / (block * block)


def _longest_run(selected: np.ndarray) -> tuple[int, int] | None:
    """(start, end) of the longest run of True in a 1-D mask, bridging gaps of up to MAX_GAP; None if empty."""
    positions = np.flatnonzero(selected)
    if positions.size == 0:
        return None
    breaks = np.flatnonzero(np.diff(positions) > MAX_GAP + 1)
    starts = np.concatenate([positions[:1], positions[breaks + 1]])
    ends = np.concatenate([positions[breaks], positions[-1:]]) + 1
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest])


def _dense_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Box over the longest runs of rows and columns in which at least MIN_CHANGING_SHARE of the mask is set."""
    rows = _longest_run(mask.mean(axis=1) >= MIN_CHANGING_SHARE)  # over (H,)
    columns = _longest_run(mask.mean(axis=0) >= MIN_CHANGING_SHARE)  # over (W,)
    if rows is None or columns is None:
        return None
    return rows[0], columns[0], rows[1], columns[1]


def _box_area(box: tuple[int, int, int, int]) -> int:
    """Area in pixels of a (top, left, bottom, right) box."""
    top, left, bottom, right = box
    return (bottom - top) * (right - left)


__all__ = ["CHANGE_LEVEL", "block_mean", "detect_imaging_region"]
