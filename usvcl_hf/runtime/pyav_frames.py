"""PyAV frames and grey arrays: a decoded frame as `(H, W)` uint8 grey (fast path for 8-bit YUV), and grey frames
encoded into a video file (the inverse of `usvcl_hf.runtime.video.read_clip`, for examples and tests)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ..image_processing_usvcl import UINT8_MAX, to_grey_uint8

MAX_RATE_DENOMINATOR = 1001  # frame rates like 30000/1001
FULL_COLOR_RANGE = 2  # AVColorRange JPEG: luma already spans 0-255
LIMITED_LUMA_BLACK, LIMITED_LUMA_SPAN = 16, 219  # limited ("TV") range luma: 16-235
LIMITED_TO_FULL_RANGE = np.clip(
    np.round((np.arange(UINT8_MAX + 1) - LIMITED_LUMA_BLACK) * UINT8_MAX / LIMITED_LUMA_SPAN), 0, UINT8_MAX
).astype(np.uint8)  # lookup table, the same expansion swscale applies for format="gray"


def frame_to_grey(frame) -> np.ndarray:
    """A decoded PyAV frame as `(H, W)` uint8 grey.

    For YUV and grey frames the luma plane *is* the grey image, as `frame.to_ndarray(format="gray")` gives it
    (limited range 16-235 expanded to full, higher bit depths scaled by their depth). For 8-bit YUV (nearly every
    H.264/MPEG clip) the plane is read directly and expanded with a lookup table, ~80x faster than a swscale
    conversion per frame. Frames of other formats (RGB, BGR, palette) become RGB and go through the grey conversion
    of still images (`to_grey_uint8`), so a colour video frame and the same picture as a PNG give the same grey.
    """
    name = frame.format.name
    if not name.startswith(("yuv", "gray", "nv", "ya")):  # rgb24, bgr0, pal8, gbrp, ...: colour pictures
        return to_grey_uint8(frame.to_ndarray(format="rgb24"))  # (H, W, 3) -> (H, W)
    if not (name.startswith("yuv") and name[-1] == "p"):  # e.g. yuv420p, yuvj420p; not yuv420p10le, gray16le
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


__all__ = ["frame_to_grey", "write_clip"]
