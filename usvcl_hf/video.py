"""Read ultrasound clips and images into greyscale uint8 frame stacks.

Containers (mp4, avi, mov, mkv, webm, mpeg) are decoded with PyAV, DICOM files with pydicom (multi-frame cine
loops and single frames), still images with Pillow. Every source becomes a :class:`Clip` of ``(T, H, W)``
uint8 greyscale frames at native resolution.

DICOM privacy: only pixel data, the frame count and the timing tags (FrameTime, CineRate,
RecommendedDisplayFrameRate) are read; no other tag is loaded into memory, stored or returned.

This module may use PyAV and pydicom, so the Hub model files never import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpeg", ".mpg", ".m4v"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
SUPPORTED_SUFFIXES = VIDEO_SUFFIXES | IMAGE_SUFFIXES | DICOM_SUFFIXES

UINT8_MAX = 255
MILLISECONDS_PER_SECOND = 1000.0
# ITU-R BT.601 luma weights, the same that Pillow's convert("L") uses.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
RGB_CHANNELS = 3
MAX_RATE_DENOMINATOR = 1001  # frame rates like 30000/1001
FULL_COLOR_RANGE = 2  # AVColorRange JPEG: luma already spans 0-255
LIMITED_LUMA_BLACK, LIMITED_LUMA_SPAN = 16, 219  # limited ("TV") range luma: 16-235
LIMITED_TO_FULL_RANGE = np.clip(
    np.round((np.arange(256) - LIMITED_LUMA_BLACK) * 255.0 / LIMITED_LUMA_SPAN), 0, 255
).astype(np.uint8)  # lookup table, the same expansion swscale applies for format="gray"
RGBA_CHANNELS = 4

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

DICOM_TIMING_TAGS = ("FrameTime", "CineRate", "RecommendedDisplayFrameRate")
DICOM_READ_TAGS = (*DICOM_TIMING_TAGS, "NumberOfFrames", "Rows", "Columns", "PhotometricInterpretation")
DICOM_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
DICOM_DEFER_SIZE = "1 KB"
# Video decoding threads: one per CPU this process may use, at most this many. FFmpeg's automatic choice (thread_count
# 0) is one more than the CPUs, slower on the 2-core machine (docs/benchmarks.md, "Demo latency": decode + crop
# 0.202 -> 0.188 s); FFmpeg's decoders give the same frames with any thread count (tests/test_video.py checks H.264,
# MPEG-4 and VP9).
MAX_DECODER_THREADS = 16


@dataclass
class Clip:
    """Greyscale frames of one clip or image, with where they came from."""

    frames: np.ndarray  # (T, H, W) uint8 greyscale, native resolution
    frame_indices: np.ndarray  # (T,) int source frame index
    fps: float  # frames per second of the source; nan when unknown (still images, DICOM without timing)
    source: str
    crop_box: tuple[int, int, int, int] | None  # (top, left, bottom, right) applied, bottom/right exclusive


class ClipReadError(ValueError):
    """A file could not be read as a clip; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def read_clip(
    path: str | Path,
    *,
    frame_stride: int = 5,
    max_frames: int | None = None,
    dedup_threshold: float | None = None,
    crop: bool = False,
    max_pixels: int | None = None,
) -> Clip:
    """Read a clip, DICOM or image as greyscale uint8 frames.

    Keeps every ``frame_stride``-th source frame (0, stride, 2*stride, ...); when ``dedup_threshold`` is set,
    drops a kept frame whose similarity (``1 - mean|a - b| / 255``) to the last kept frame is at least the
    threshold; stops after ``max_frames`` kept frames. ``crop`` cuts all frames to
    :func:`detect_imaging_region`. Raises :class:`ClipReadError` (path and reason) for unreadable,
    empty or oversized files.
    """
    path = Path(path)
    _check_arguments(path, frame_stride, max_frames, dedup_threshold)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ClipReadError(path, "no such file")
    if suffix not in SUPPORTED_SUFFIXES:
        raise ClipReadError(path, f"unsupported file type {suffix or '(no suffix)'}")
    if suffix in VIDEO_SUFFIXES:
        frames, indices, fps = _read_container(path, frame_stride, max_frames, dedup_threshold, max_pixels)
    else:
        if suffix in DICOM_SUFFIXES:
            frames, indices, fps = _read_dicom(path, frame_stride, max_pixels)
        else:
            frames, indices, fps = _read_image(path, max_pixels)
        frames, indices = _keep_distinct(frames, indices, dedup_threshold, max_frames)
    if len(frames) == 0:
        raise ClipReadError(path, "no frames decoded (zero-frame clip)")
    crop_box = None
    if crop:
        crop_box = detect_imaging_region(frames)
        top, left, bottom, right = crop_box
        frames = np.ascontiguousarray(frames[:, top:bottom, left:right])
    return Clip(frames=frames, frame_indices=indices, fps=fps, source=str(path), crop_box=crop_box)


def _check_arguments(
    path: Path, frame_stride: int, max_frames: int | None, dedup_threshold: float | None
) -> None:
    """Reject nonsensical options early (programming errors, not bad files)."""
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride} (reading {path})")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames} (reading {path})")
    if dedup_threshold is not None and not 0.0 <= dedup_threshold <= 1.0:
        raise ValueError(f"dedup_threshold must lie in [0, 1], got {dedup_threshold} (reading {path})")


def frame_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Similarity of two uint8 frames in [0, 1]: ``1 - mean|first - second| / 255`` (1 = identical)."""
    difference = np.abs(first.astype(np.int16) - second.astype(np.int16))
    return 1.0 - float(difference.mean()) / UINT8_MAX


def _is_duplicate(frame: np.ndarray, last_kept: np.ndarray | None, dedup_threshold: float | None) -> bool:
    """True when ``frame`` is a near duplicate of the last kept frame."""
    if dedup_threshold is None or last_kept is None:
        return False
    return frame_similarity(frame, last_kept) >= dedup_threshold


def _keep_distinct(
    frames: np.ndarray, indices: np.ndarray, dedup_threshold: float | None, max_frames: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Drop near duplicates of the last kept frame, then cap at ``max_frames``."""
    keep: list[int] = []
    for position, frame in enumerate(frames):
        last_kept = frames[keep[-1]] if keep else None
        if not _is_duplicate(frame, last_kept, dedup_threshold):
            keep.append(position)
        if max_frames is not None and len(keep) >= max_frames:
            break
    return frames[keep], indices[keep]


def _check_size(path: Path, height: int, width: int, max_pixels: int | None) -> None:
    """Raise when a frame has more pixels than allowed."""
    if max_pixels is not None and height * width > max_pixels:
        raise ClipReadError(path, f"resolution {width}x{height} exceeds max_pixels={max_pixels}")


def _read_container(
    path: Path,
    frame_stride: int,
    max_frames: int | None,
    dedup_threshold: float | None,
    max_pixels: int | None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Decode a video container with PyAV (threaded), keeping strided, distinct frames."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipReadError(path, "container has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = decoder_thread_count()
            _check_size(path, stream.codec_context.height, stream.codec_context.width, max_pixels)
            fps = _stream_fps(stream)
            kept, indices = _decode_kept(path, container.decode(stream), frame_stride, max_frames,
                                         dedup_threshold, max_pixels)
    except ClipReadError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as error:
        raise ClipReadError(path, f"cannot decode video ({type(error).__name__}: {error})") from error
    if not kept:
        return np.zeros((0, 0, 0), np.uint8), np.zeros(0, np.int64), fps
    return np.stack(kept), np.asarray(indices, dtype=np.int64), fps  # (T, H, W)


def decoder_thread_count() -> int:
    """Threads for decoding a video: the CPUs this process may use, between 1 and MAX_DECODER_THREADS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DECODER_THREADS))


def _decode_kept(
    path: Path,
    decoded: Iterable,
    frame_stride: int,
    max_frames: int | None,
    dedup_threshold: float | None,
    max_pixels: int | None,
) -> tuple[list[np.ndarray], list[int]]:
    """Walk decoded frames, converting only the strided ones; stop early at ``max_frames``."""
    kept: list[np.ndarray] = []
    indices: list[int] = []
    for index, frame in enumerate(decoded):
        if index % frame_stride:
            continue
        _check_size(path, frame.height, frame.width, max_pixels)
        grey = frame_to_grey(frame)  # (H, W) uint8
        if _is_duplicate(grey, kept[-1] if kept else None, dedup_threshold):
            continue
        kept.append(grey)
        indices.append(index)
        if max_frames is not None and len(kept) >= max_frames:
            break
    return kept, indices


def frame_to_grey(frame) -> np.ndarray:
    """A decoded PyAV frame as `(H, W)` uint8 grey, identical to `frame.to_ndarray(format="gray")`.

    For 8-bit YUV frames (nearly every H.264/MPEG clip) the luma plane *is* the grey image: it is read directly and
    expanded from limited (16-235) to full range with a lookup table, ~80x faster than a swscale conversion per
    frame. Other pixel formats go through swscale.
    """
    name = frame.format.name
    if not (name.startswith("yuv") and name[-1] == "p"):  # e.g. yuv420p, yuvj420p; not yuv420p10le, rgb24
        return frame.to_ndarray(format="gray")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)  # (H, line_size) padded rows
    luma = rows[:, : frame.width]  # (H, line_size) -> (H, W)
    if name.startswith("yuvj") or frame.color_range == FULL_COLOR_RANGE:
        return luma.copy()
    return LIMITED_TO_FULL_RANGE[luma]


def write_clip(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    *,
    codec: str = "libx264",
    pixel_format: str = "yuv420p",
    options: dict[str, str] | None = None,
    bit_rate: int | None = None,
) -> Path:
    """Encode `(T, H, W)` uint8 grey frames into a video file with PyAV (the inverse of `read_clip`)."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(MAX_RATE_DENOMINATOR),
                                      options=options or {})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pixel_format
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")
            for packet in stream.encode(video_frame.reformat(format=pixel_format)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _stream_fps(stream) -> float:
    """Frames per second of a PyAV stream, nan when the container does not say."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else math.nan


def _read_image(path: Path, max_pixels: int | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Read a still image (first frame of multi-page files) as a one-frame clip."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            _check_size(path, image.height, image.width, max_pixels)
            grey = image_to_grey(image)
    except ClipReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ClipReadError(path, f"cannot decode image ({type(error).__name__}: {error})") from error
    return grey[np.newaxis], np.zeros(1, dtype=np.int64), math.nan  # (1, H, W)


def image_to_grey(image) -> np.ndarray:
    """Convert a PIL image of any mode to an (H, W) uint8 greyscale array.

    16-bit and float modes are rescaled by their value range (not clipped); RGBA is composited on black;
    other colour modes go through RGB and BT.601 luma.
    """
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if image.mode.startswith(("I", "F")):
        return rescale_to_uint8(np.asarray(image))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    return colour_to_grey(pixels)


def colour_to_grey(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) RGB or (..., 4) RGBA (alpha composited on black) uint8 pixels -> (...) uint8 luma."""
    rgb = pixels[..., :RGB_CHANNELS].astype(np.float32)
    luma = rgb @ LUMA_WEIGHTS  # (..., 3) -> (...)
    if pixels.shape[-1] == RGBA_CHANNELS:
        luma = luma * (pixels[..., RGB_CHANNELS].astype(np.float32) / UINT8_MAX)
    return np.clip(np.rint(luma), 0, UINT8_MAX).astype(np.uint8)


def rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an array linearly from its own [min, max] onto [0, 255] uint8 (a constant array becomes 0)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (UINT8_MAX / (high - low))
    return np.clip(np.rint(scaled), 0, UINT8_MAX).astype(np.uint8)


def _read_dicom_header(path: Path):
    """Read only the frame count, size, photometric and timing tags (and locate, not load, the pixel data)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    tags = [*DICOM_READ_TAGS, *DICOM_PIXEL_KEYWORDS]
    try:
        return pydicom.dcmread(path, specific_tags=tags, defer_size=DICOM_DEFER_SIZE)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise ClipReadError(path, f"not a readable DICOM file ({type(error).__name__}: {error})") from error


def _dicom_fps(header) -> float:
    """Frames per second from FrameTime (ms), CineRate or RecommendedDisplayFrameRate; nan when absent."""
    frame_time_ms = header.get("FrameTime")
    if frame_time_ms and float(frame_time_ms) > 0:
        return MILLISECONDS_PER_SECOND / float(frame_time_ms)
    for keyword in DICOM_TIMING_TAGS[1:]:
        rate = header.get(keyword)
        if rate and float(rate) > 0:
            return float(rate)
    return math.nan


def _read_dicom(path: Path, frame_stride: int, max_pixels: int | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Decode the strided frames of a (multi-frame) DICOM file as greyscale."""
    from pydicom.pixels import iter_pixels

    header = _read_dicom_header(path)
    if not any(keyword in header for keyword in DICOM_PIXEL_KEYWORDS):
        raise ClipReadError(path, "DICOM file has no pixel data")
    _check_size(path, int(header.get("Rows", 0)), int(header.get("Columns", 0)), max_pixels)
    frame_count = int(header.get("NumberOfFrames") or 1)
    indices = np.arange(0, frame_count, frame_stride, dtype=np.int64)
    try:
        raw_frames = list(_iter_dicom_frames(iter_pixels, path, indices))
    except (ValueError, RuntimeError, NotImplementedError, OSError, AttributeError, KeyError) as error:
        raise ClipReadError(path, f"cannot decode DICOM pixel data ({type(error).__name__}: {error})") from error
    frames = dicom_frames_to_grey(np.stack(raw_frames), header.get("PhotometricInterpretation", ""))
    return frames, indices, _dicom_fps(header)


def _iter_dicom_frames(iter_pixels, path: Path, indices: np.ndarray) -> Iterator[np.ndarray]:
    """Yield the requested frames as RGB (colour) or single-channel arrays, without a full Dataset."""
    yield from iter_pixels(path, indices=[int(index) for index in indices], as_rgb=True)


def dicom_frames_to_grey(frames: np.ndarray, photometric: str) -> np.ndarray:
    """(T, H, W) or (T, H, W, 3) decoded DICOM frames -> (T, H, W) uint8; MONOCHROME1 is inverted."""
    if frames.ndim == 4:  # (T, H, W, 3) colour, already converted to RGB by pydicom
        return colour_to_grey(rescale_to_uint8(frames) if frames.dtype != np.uint8 else frames)
    grey = frames if frames.dtype == np.uint8 else rescale_to_uint8(frames)
    if photometric == "MONOCHROME1":
        grey = UINT8_MAX - grey
    return grey


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
