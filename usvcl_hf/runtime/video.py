"""Read ultrasound clips and images into greyscale uint8 frame stacks.

Containers (mp4, avi, mov, mkv, webm, mpeg) are decoded with PyAV, DICOM files with pydicom (multi-frame cine
loops and single frames, with or without a suffix), still images with Pillow. Every source becomes a :class:`Clip`
of ``(T, H, W)`` uint8 greyscale frames, at native resolution unless a :class:`DecodeBudget` shrinks them.
Still images and DICOM pixels go through the grey conversion of :mod:`usvcl_hf.image_processing_usvcl`
(``to_grey_uint8``), the one the image processor uses, so every door sees the same pixels for one image.

DICOM pixels are shown as the file says they should be (:mod:`usvcl_hf.runtime.dicom_pixels`: LUTs, window,
`BitsStored`).

DICOM privacy: only pixel data, the frame count, the timing tags (FrameTime, CineRate, RecommendedDisplayFrameRate)
and the tags that say how to display the pixels (bit depth, rescale, LUTs, window) are read; no other tag is loaded
into memory, stored or returned.

This module may use PyAV and pydicom, so the Hub model files never import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..image_processing_usvcl import UINT8_MAX, image_size_problem, to_grey_uint8
from .dicom_pixels import DICOM_DISPLAY_TAGS, dicom_frames_to_grey
from .file_signatures import still_image_format
from .imaging_region import detect_imaging_region
from .pyav_frames import frame_to_grey

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpeg", ".mpg", ".m4v"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
SUPPORTED_SUFFIXES = VIDEO_SUFFIXES | IMAGE_SUFFIXES | DICOM_SUFFIXES
DICOM_PREAMBLE_SIZE = 128  # a DICOM Part 10 file: 128-byte preamble, then b"DICM"
DICOM_MAGIC = b"DICM"

MILLISECONDS_PER_SECOND = 1000.0
MICROSECONDS_PER_SECOND = 1_000_000.0  # PyAV's container.duration unit


DICOM_TIMING_TAGS = ("FrameTime", "CineRate", "RecommendedDisplayFrameRate")
DICOM_READ_TAGS = (
    *DICOM_TIMING_TAGS, "NumberOfFrames", "Rows", "Columns", "PhotometricInterpretation", *DICOM_DISPLAY_TAGS,
)
DICOM_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
DICOM_DEFER_SIZE = "1 KB"
# Video decoding threads: one per CPU this process may use, at most this many. FFmpeg's automatic choice (thread_count
# 0) is one more than the CPUs, slower on the 2-core machine (docs/benchmarks.md, "Demo latency": decode + crop
# 0.202 -> 0.188 s); FFmpeg's decoders give the same frames with any thread count (tests/runtime/test_video.py
# checks H.264, MPEG-4 and VP9).
MAX_DECODER_THREADS = 16


@dataclass
class Clip:
    """Greyscale frames of one clip or image, with where they came from."""

    frames: np.ndarray  # (T, H, W) uint8 greyscale, native resolution
    frame_indices: np.ndarray  # (T,) int source frame index
    fps: float  # frames per second of the source; nan when unknown (still images, DICOM without timing)
    source: str
    crop_box: tuple[int, int, int, int] | None  # (top, left, bottom, right) applied, bottom/right exclusive
    frame_stride: int = 1  # stride the kept frames were taken at (raised by a DecodeBudget over a long clip)
    downscale: int = 1  # each kept frame is the f x f box average of the source frame (f = 1: native size)
    source_size: tuple[int, int] | None = None  # (H, W) of the source frames before `downscale`


@dataclass(frozen=True)
class DecodeBudget:
    """What one decoded clip may hold in memory, enforced while it is decoded (``read_clip(budget=...)``).

    Size: a frame whose longer side L is at least ``2 * working_side`` is shrunk as it is decoded by the whole factor
    ``f = floor(L / working_side)`` (mean of each f x f block), so the kept frames' longer side lies below
    ``2 * working_side``. Count: with kept frames of ``h x w`` pixels, at most
    ``n = min(max_frames, floor(max_pixels / (h * w)))`` frames are kept, evenly spread over the clip: every s-th
    frame with ``s = max(frame_stride, ceil(T / n))`` for a clip of T frames (T from the header); when the header
    is missing or short, every other kept frame is dropped and s doubled whenever n would be passed. So at most
    ``n + 1`` shrunk frames are ever held, ``n * h * w <= max_pixels``. A clip longer than ``max_seconds`` is
    refused (from the header before decoding when it says, else as soon as a frame lies past the limit).
    """

    max_frames: int
    max_pixels: int  # kept frames x pixels per kept frame
    working_side: int | None = None  # None: never shrink
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.max_pixels < 1:
            raise ValueError(f"DecodeBudget needs max_frames >= 1 and max_pixels >= 1, got {self}")
        if self.working_side is not None and self.working_side < 1:
            raise ValueError(f"DecodeBudget.working_side must be >= 1 or None, got {self.working_side}")

    def shrink_factor(self, height: int, width: int) -> int:
        """Whole factor f a `height x width` frame is shrunk by (1 = kept at native size)."""
        if self.working_side is None:
            return 1
        return max(1, min(max(height, width) // self.working_side, min(height, width)))

    def frame_limit(self, height: int, width: int) -> int:
        """Most frames of `height x width` source pixels kept: min(max_frames, max_pixels / shrunk frame pixels)."""
        factor = self.shrink_factor(height, width)
        pixels = max(1, height // factor) * max(1, width // factor)
        return max(1, min(self.max_frames, self.max_pixels // pixels))


class ClipReadError(ValueError):
    """A file could not be read as a clip; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ClipTooLongError(ClipReadError):
    """A clip is longer than the caller allows; the message states the limit."""


@dataclass
class _Plan:
    """`read_clip`'s options for one source, checked."""

    frame_stride: int
    max_frames: int | None
    dedup_threshold: float | None
    max_pixels: int | None
    budget: DecodeBudget | None


@dataclass
class _Decoded:
    """What a reader returns: kept frames `(T, H, W)` uint8 and how they were taken."""

    frames: np.ndarray
    indices: np.ndarray
    fps: float
    frame_stride: int
    downscale: int
    source_size: tuple[int, int]


def read_clip(
    path: str | Path,
    *,
    frame_stride: int = 5,
    max_frames: int | None = None,
    dedup_threshold: float | None = None,
    crop: bool = False,
    max_pixels: int | None = None,
    budget: DecodeBudget | None = None,
) -> Clip:
    """Read a clip, DICOM or image as greyscale uint8 frames.

    Keeps every ``frame_stride``-th source frame (0, stride, 2*stride, ...); when ``dedup_threshold`` is set,
    drops a kept frame whose similarity (``1 - mean|a - b| / 255``) to the last kept frame is at least the
    threshold; stops after ``max_frames`` kept frames. ``budget`` (:class:`DecodeBudget`, not with ``max_frames``)
    instead shrinks large frames as they are decoded and spreads its frame limit evenly over the whole clip.
    ``crop`` cuts all frames to :func:`detect_imaging_region`. Raises :class:`ClipReadError` (path and reason) for
    unreadable, empty or oversized files, :class:`ClipTooLongError` past the budget's ``max_seconds``.
    """
    path = Path(path)
    plan = _Plan(frame_stride, max_frames, dedup_threshold, max_pixels, budget)
    _check_arguments(path, plan)
    if not path.is_file():
        raise ClipReadError(path, "no such file")
    kind = source_kind(path)
    if kind == "video":
        _reject_still_image(path, path.suffix.lower())
        decoded = _read_container(path, plan)
    else:
        decoded = _read_dicom(path, plan) if kind == "dicom" else _read_image(path, plan)
        decoded.frames, decoded.indices = _keep_distinct(decoded.frames, decoded.indices, dedup_threshold, max_frames)
    if len(decoded.frames) == 0:
        raise ClipReadError(path, "no frames decoded (zero-frame clip)")
    too_small = image_size_problem(*decoded.source_size)  # as decoded, before any shrinking or crop
    if too_small:
        raise ClipReadError(path, too_small)
    frames, crop_box = decoded.frames, None
    if crop:
        crop_box = detect_imaging_region(frames)
        top, left, bottom, right = crop_box
        frames = np.ascontiguousarray(frames[:, top:bottom, left:right])
    return Clip(
        frames=frames, frame_indices=decoded.indices, fps=decoded.fps, source=str(path), crop_box=crop_box,
        frame_stride=decoded.frame_stride, downscale=decoded.downscale, source_size=decoded.source_size,
    )


def _reject_still_image(path: Path, suffix: str) -> None:
    """Raise `ClipReadError` when a file named like a video holds a still image (e.g. a PNG renamed `.mp4`)."""
    still = still_image_format(path)
    if still is not None:
        name, image_suffix = still
        raise ClipReadError(
            path, f"this is a still {name} image, not a video (its name ends in {suffix}); rename it to "
            f"{image_suffix} to analyse it as an image",
        )


def is_dicom_file(path: str | Path) -> bool:
    """True when the file starts like a DICOM Part 10 file (128-byte preamble, then ``DICM``)."""
    with open(path, "rb") as file:
        head = file.read(DICOM_PREAMBLE_SIZE + len(DICOM_MAGIC))
    return head[DICOM_PREAMBLE_SIZE:] == DICOM_MAGIC


def source_kind(path: str | Path) -> str:
    """"video", "dicom" or "image" by suffix (SUPPORTED_SUFFIXES); a file without a suffix may be DICOM.

    Raises :class:`ClipReadError` for any other file, naming the accepted types.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in DICOM_SUFFIXES or (not suffix and path.is_file() and is_dicom_file(path)):
        return "dicom"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    accepted = ", ".join(sorted(SUPPORTED_SUFFIXES))
    raise ClipReadError(path, f"unsupported file type {suffix or '(no suffix, not DICOM)'}; accepted: {accepted}, "
                        "or DICOM without a suffix")


def _check_arguments(path: Path, plan: _Plan) -> None:
    """Reject nonsensical options early (programming errors, not bad files)."""
    if plan.frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {plan.frame_stride} (reading {path})")
    if plan.max_frames is not None and plan.max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {plan.max_frames} (reading {path})")
    if plan.dedup_threshold is not None and not 0.0 <= plan.dedup_threshold <= 1.0:
        raise ValueError(f"dedup_threshold must lie in [0, 1], got {plan.dedup_threshold} (reading {path})")
    if plan.budget is not None and plan.max_frames is not None:
        raise ValueError(f"give max_frames or a DecodeBudget, not both (reading {path})")


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


def _check_seconds(path: Path, seconds: float, budget: DecodeBudget | None) -> None:
    """Raise `ClipTooLongError` when a clip (or the frame at `seconds`) lies past the budget's `max_seconds`."""
    if budget is None or budget.max_seconds is None or not math.isfinite(seconds):
        return
    if seconds > budget.max_seconds:
        raise ClipTooLongError(path, f"clip is longer than the limit of {budget.max_seconds:g} s (trim it)")


class _Sampler:
    """Kept frames of a stream: every `stride`-th, near duplicates dropped, at most `limit` evenly spread.

    When keeping a frame would pass `limit`, every other kept frame is dropped and the stride doubled (kept indices
    0, s, 2s, ... become 0, 2s, 4s, ...), so at most `limit + 1` frames are held at any time.
    """

    def __init__(self, stride: int, limit: int | None, stop_after: int | None, dedup: float | None) -> None:
        self.stride, self.limit, self.stop_after, self.dedup = stride, limit, stop_after, dedup
        self.frames: list[np.ndarray] = []
        self.indices: list[int] = []

    def wants(self, index: int) -> bool:
        """Whether source frame `index` is on the current stride."""
        return index % self.stride == 0

    def add(self, frame: np.ndarray, index: int) -> bool:
        """Keep `frame` unless it repeats the last kept one; False once `stop_after` frames are kept."""
        if _is_duplicate(frame, self.frames[-1] if self.frames else None, self.dedup):
            return True
        self.frames.append(frame)
        self.indices.append(index)
        if self.limit is not None and len(self.frames) > self.limit:
            self.frames, self.indices, self.stride = self.frames[::2], self.indices[::2], self.stride * 2
        return self.stop_after is None or len(self.frames) < self.stop_after


def _stream_sampler(plan: _Plan, height: int, width: int, frame_estimate: int | None) -> _Sampler:
    """A sampler for a stream of about `frame_estimate` frames (None: unknown) under `plan`."""
    if plan.budget is None:
        return _Sampler(plan.frame_stride, None, plan.max_frames, plan.dedup_threshold)
    limit = plan.budget.frame_limit(height, width)
    stride = plan.frame_stride
    if frame_estimate:
        stride = max(stride, math.ceil(frame_estimate / limit))
    return _Sampler(stride, limit, None, plan.dedup_threshold)


def _read_container(path: Path, plan: _Plan) -> _Decoded:
    """Decode a video container with PyAV (threaded), keeping strided, distinct, shrunk frames within `plan`."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipReadError(path, "container has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = decoder_thread_count()
            height, width = stream.codec_context.height, stream.codec_context.width
            _check_size(path, height, width, plan.max_pixels)
            fps, seconds = _stream_fps(stream), _stream_seconds(container, stream)
            _check_seconds(path, seconds, plan.budget)
            sampler = _stream_sampler(plan, height, width, _frame_estimate(stream, seconds, fps))
            factor = plan.budget.shrink_factor(height, width) if plan.budget else 1
            _decode_kept(path, container.decode(stream), sampler, plan, factor, fps)
    except ClipReadError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as error:
        raise ClipReadError(path, f"cannot decode video ({type(error).__name__}: {error})") from error
    frames = np.stack(sampler.frames) if sampler.frames else np.zeros((0, 0, 0), np.uint8)  # (T, H, W)
    return _Decoded(frames, np.asarray(sampler.indices, dtype=np.int64), fps, sampler.stride, factor, (height, width))


def decoder_thread_count() -> int:
    """Threads for decoding a video: the CPUs this process may use, between 1 and MAX_DECODER_THREADS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DECODER_THREADS))


def _decode_kept(path: Path, decoded: Iterable, sampler: _Sampler, plan: _Plan, factor: int, fps: float) -> None:
    """Walk decoded frames, converting (and shrinking by `factor`) only those the sampler wants."""
    for index, frame in enumerate(decoded):
        if fps > 0:
            _check_seconds(path, index / fps, plan.budget)
        if not sampler.wants(index):
            continue
        _check_size(path, frame.height, frame.width, plan.max_pixels)
        if not sampler.add(shrink(frame_to_grey(frame), factor), index):  # (H, W) -> (H // f, W // f)
            break


def shrink(frame: np.ndarray, factor: int) -> np.ndarray:
    """`(H, W)` or `(H, W, C)` pixels -> `(H // f, W // f[, C])`, each pixel the mean of an f x f block.

    Rows and columns past the last whole block are dropped. uint8 greyscale goes through Pillow's box reduction
    (the same block means, rounded), other arrays through NumPy; integer types are rounded back to their type.
    """
    if factor == 1:
        return frame
    height, width = (frame.shape[0] // factor) * factor, (frame.shape[1] // factor) * factor
    whole = frame[:height, :width]
    if whole.dtype == np.uint8 and whole.ndim == 2:
        from PIL import Image

        return np.asarray(Image.fromarray(np.ascontiguousarray(whole)).reduce(factor))
    blocks = whole.reshape(height // factor, factor, width // factor, factor, *whole.shape[2:])  # (h, f, w, f[, C])
    means = blocks.mean(axis=(1, 3))  # (h, w[, C])
    return np.rint(means).astype(frame.dtype) if np.issubdtype(frame.dtype, np.integer) else means.astype(frame.dtype)


def _stream_fps(stream) -> float:
    """Frames per second of a PyAV stream, nan when the container does not say."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else math.nan


def _stream_seconds(container, stream) -> float:
    """Length of a PyAV stream in seconds from the header (stream, else container); nan when neither says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / MICROSECONDS_PER_SECOND
    return math.nan


def _frame_estimate(stream, seconds: float, fps: float) -> int | None:
    """Frame count from the header (its count, else length x rate); None when unknown."""
    if stream.frames:
        return int(stream.frames)
    if math.isfinite(seconds) and math.isfinite(fps):
        return max(1, round(seconds * fps))
    return None


def _read_image(path: Path, plan: _Plan) -> _Decoded:
    """Read a still image (first frame of multi-page files) as a one-frame clip, shrunk by the plan's budget."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            height, width = image.height, image.width
            _check_size(path, height, width, plan.max_pixels)
            grey = to_grey_uint8(image)  # (H, W) uint8, the one grey conversion of every door
    except ClipReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ClipReadError(path, f"cannot decode image ({type(error).__name__}: {error})") from error
    factor = plan.budget.shrink_factor(height, width) if plan.budget else 1
    frames = shrink(grey, factor)[np.newaxis]  # (1, H // f, W // f)
    return _Decoded(frames, np.zeros(1, dtype=np.int64), math.nan, 1, factor, (height, width))


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


def _read_dicom(path: Path, plan: _Plan) -> _Decoded:
    """Decode the strided (and, under a budget, evenly spread and shrunk) frames of a DICOM file as greyscale."""
    from pydicom.pixels import iter_pixels

    header = _read_dicom_header(path)
    if not any(keyword in header for keyword in DICOM_PIXEL_KEYWORDS):
        raise ClipReadError(path, "DICOM file has no pixel data")
    height, width = int(header.get("Rows", 0)), int(header.get("Columns", 0))
    _check_size(path, height, width, plan.max_pixels)
    frame_count, fps = int(header.get("NumberOfFrames") or 1), _dicom_fps(header)
    stride, factor = plan.frame_stride, 1
    if plan.budget is not None:
        _check_seconds(path, frame_count / fps, plan.budget)
        stride = max(stride, math.ceil(frame_count / plan.budget.frame_limit(height, width)))
        factor = plan.budget.shrink_factor(height, width)
    indices = np.arange(0, frame_count, stride, dtype=np.int64)
    try:
        raw_frames = [shrink(frame, factor) for frame in _iter_dicom_frames(iter_pixels, path, indices)]
    except (ValueError, RuntimeError, NotImplementedError, OSError, AttributeError, KeyError) as error:
        raise ClipReadError(path, f"cannot decode DICOM pixel data ({type(error).__name__}: {error})") from error
    try:
        frames = dicom_frames_to_grey(np.stack(raw_frames), header)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
        raise ClipReadError(path, f"cannot apply the DICOM display tags ({type(error).__name__}: {error})") from error
    return _Decoded(frames, indices, fps, stride, factor, (height, width))


def _iter_dicom_frames(iter_pixels, path: Path, indices: np.ndarray) -> Iterator[np.ndarray]:
    """Yield the requested frames as RGB (colour) or single-channel arrays, without a full Dataset."""
    yield from iter_pixels(path, indices=[int(index) for index in indices], as_rgb=True)
