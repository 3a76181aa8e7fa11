"""Decoding files into stored frames: `read_clip` (the one grey conversion), downscaling, PNG, in parallel."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from training.prepare_data.sources import FileJob
from usvcl_hf.runtime.video import ClipReadError, read_clip

DEFAULT_FRAME_STRIDE = 5
DEFAULT_STORED_SIZE = 256


@dataclass
class DecodeOptions:
    """How each file is decoded and stored."""

    frame_stride: int = DEFAULT_FRAME_STRIDE
    max_frames: int | None = None
    dedup_threshold: float | None = None
    crop: bool = False
    stored_size: int | None = DEFAULT_STORED_SIZE
    max_pixels: int | None = None


@dataclass
class DecodeResult:
    """Encoded frames of one file, or the reason it was skipped."""

    png_frames: list[bytes] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=list)
    error: str | None = None


def resize_shorter_side(frame: np.ndarray, stored_size: int | None) -> np.ndarray:
    """Resize (H, W) uint8 so its shorter side is ``stored_size`` (aspect kept); only ever downscales."""
    height, width = frame.shape
    if stored_size is None or min(height, width) <= stored_size:
        return frame
    scale = stored_size / min(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(new_size, Image.Resampling.LANCZOS))


def encode_png(frame: np.ndarray) -> bytes:
    """(H, W) uint8 -> greyscale PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_file(path: Path, options: DecodeOptions) -> DecodeResult:
    """Read one file into stored-size PNG frames (runs in a worker process)."""
    try:
        clip = read_clip(
            path,
            frame_stride=options.frame_stride,
            max_frames=options.max_frames,
            dedup_threshold=options.dedup_threshold,
            crop=options.crop,
            max_pixels=options.max_pixels,
        )
    except ClipReadError as error:
        return DecodeResult(error=error.reason)
    frames = [encode_png(resize_shorter_side(frame, options.stored_size)) for frame in clip.frames]
    return DecodeResult(png_frames=frames, frame_indices=[int(index) for index in clip.frame_indices])


def decode_all(jobs: list[FileJob], options: DecodeOptions, workers: int) -> Iterator[tuple[FileJob, DecodeResult]]:
    """Decode jobs in parallel, yielding results in job order with a progress bar."""
    decode = partial(decode_file, options=options)
    paths = [job.path for job in jobs]
    if workers <= 1:
        results = map(decode, paths)
        yield from zip(jobs, tqdm(results, total=len(jobs), desc="decoding", unit="file"), strict=True)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(decode, paths, chunksize=1)
        yield from zip(jobs, tqdm(results, total=len(jobs), desc="decoding", unit="file"), strict=True)

