"""Tests for usvcl_hf.runtime.video: containers, DICOM, images, stride/dedup/max_frames, crop and errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydicom import examples

from training import synthetic
from usvcl_hf.runtime import video
from usvcl_hf.runtime.video import (
    ClipReadError,
    ClipTooLongError,
    DecodeBudget,
    decoder_thread_count,
    detect_imaging_region,
    read_clip,
)

CONTAINERS = ("mp4", "avi", "mov", "mkv", "webm")
STRIDE = 5
EXPECTED_KEPT = math.ceil(synthetic.FRAME_COUNT / STRIDE)
CROP_TOLERANCE = 3  # px a detected edge may sit off the true imaging-region edge (codec blur at the blob edge)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic clip per container, plus a DICOM cine loop."""
    folder = tmp_path_factory.mktemp("clips")
    for container in CONTAINERS:
        synthetic.write_video(folder / f"clip.{container}")
    synthetic.write_dicom(folder / "clip.dcm")
    return folder


@pytest.mark.parametrize("suffix", [*CONTAINERS, "dcm"])
def test_stride_keeps_every_kth_frame(clip_folder: Path, suffix: str) -> None:
    clip = read_clip(clip_folder / f"clip.{suffix}", frame_stride=STRIDE)
    assert clip.frames.shape == (EXPECTED_KEPT, synthetic.HEIGHT, synthetic.WIDTH)
    assert clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.frame_indices, np.arange(0, synthetic.FRAME_COUNT, STRIDE))
    assert clip.fps == pytest.approx(synthetic.FPS)
    assert clip.crop_box is None


def test_max_frames_caps(clip_folder: Path) -> None:
    clip = read_clip(clip_folder / "clip.mp4", frame_stride=2, max_frames=3)
    np.testing.assert_array_equal(clip.frame_indices, [0, 2, 4])


def test_dedup_drops_repeated_frames(tmp_path: Path) -> None:
    frames = np.repeat(synthetic.synthetic_frames(4), 3, axis=0)  # each distinct frame three times
    path = synthetic.write_dicom(tmp_path / "repeated.dcm", frames)
    clip = read_clip(path, frame_stride=1, dedup_threshold=0.999)
    np.testing.assert_array_equal(clip.frame_indices, [0, 3, 6, 9])
    assert len(read_clip(path, frame_stride=1).frames) == len(frames)


def test_dedup_in_video_keeps_fewer_frames(clip_folder: Path) -> None:
    everything = read_clip(clip_folder / "clip.mp4", frame_stride=1)
    deduplicated = read_clip(clip_folder / "clip.mp4", frame_stride=1, dedup_threshold=0.98)
    assert 0 < len(deduplicated.frames) < len(everything.frames)


@pytest.mark.parametrize("suffix", ["mp4", "webm", "dcm"])
def test_crop_removes_static_border(clip_folder: Path, suffix: str) -> None:
    clip = read_clip(clip_folder / f"clip.{suffix}", frame_stride=1, crop=True)
    expected = (synthetic.BORDER, synthetic.BORDER, synthetic.HEIGHT - synthetic.BORDER,
                synthetic.WIDTH - synthetic.BORDER)
    assert clip.crop_box is not None
    np.testing.assert_allclose(clip.crop_box, expected, atol=CROP_TOLERANCE)
    top, left, bottom, right = clip.crop_box
    assert clip.frames.shape[1:] == (bottom - top, right - left)


def test_single_frame_crop_falls_back_to_non_black_box() -> None:
    frame = np.zeros((20, 30), dtype=np.uint8)
    frame[5:15, 10:25] = 100
    assert detect_imaging_region(frame) == (5, 10, 15, 25)
    assert detect_imaging_region(np.zeros((1, 4, 6), np.uint8)) == (0, 0, 4, 6)


def test_pydicom_ybr_cine_loop_decodes() -> None:
    clip = read_clip(examples.get_path("ybr_color"))
    assert clip.frames.shape == (6, 240, 320)
    np.testing.assert_array_equal(clip.frame_indices, [0, 5, 10, 15, 20, 25])
    assert clip.fps == pytest.approx(30.0, rel=1e-3)
    assert clip.frames.max() > 0


def test_rgba_png_is_greyscale(tmp_path: Path) -> None:
    clip = read_clip(synthetic.write_png_rgba(tmp_path / "rgba.png"))
    expected = synthetic.synthetic_frames(1)[0].copy()
    expected[: synthetic.BORDER, : synthetic.BORDER] = 0  # transparent corner composited on black
    assert clip.frames.shape == (1, synthetic.HEIGHT, synthetic.WIDTH)
    np.testing.assert_array_equal(clip.frames[0], expected)
    assert math.isnan(clip.fps)


def test_16bit_png_is_scaled_by_its_bit_depth(tmp_path: Path) -> None:
    clip = read_clip(synthetic.write_png_16bit(tmp_path / "deep.png"))
    ramp = np.linspace(1000, 41000, synthetic.WIDTH).round()
    np.testing.assert_array_equal(clip.frames[0, 0], np.rint(ramp / 257).astype(np.uint8))  # not stretched, not clipped


def test_rgb_video_frames_get_the_grey_of_still_images() -> None:
    import av

    from usvcl_hf.image_processing_usvcl import to_grey_uint8
    from usvcl_hf.runtime.pyav_frames import frame_to_grey

    picture = np.random.default_rng(0).integers(0, 256, (38, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(frame_to_grey(av.VideoFrame.from_ndarray(picture, format="rgb24")),
                                  to_grey_uint8(picture))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda folder: synthetic.write_text_as_mp4(folder / "text.mp4"), "cannot decode video"),
        (lambda folder: synthetic.write_corrupt(folder / "noise.avi"), "cannot decode video"),
        (lambda folder: synthetic.write_zero_frame_video(folder / "empty.avi"), "no frames"),
        (lambda folder: synthetic.write_dicom(folder / "nopix.dcm", with_pixels=False), "no pixel data"),
        (lambda folder: synthetic.write_corrupt(folder / "noise.dcm"), "DICOM"),
        (lambda folder: synthetic.write_corrupt(folder / "noise.png"), "cannot decode image"),
        (lambda folder: folder / "missing.mp4", "no such file"),
    ],
)
def test_bad_files_raise_with_path_and_reason(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ClipReadError, match=reason) as caught:
        read_clip(path)
    assert str(path) in str(caught.value)


def test_truncated_video_raises(clip_folder: Path, tmp_path: Path) -> None:
    path = synthetic.write_truncated(tmp_path / "cut.mp4", clip_folder / "clip.mp4")
    with pytest.raises(ClipReadError, match=str(path)):
        read_clip(path)


def test_max_pixels_rejects_large_frames(clip_folder: Path) -> None:
    for suffix in ("mp4", "dcm"):
        with pytest.raises(ClipReadError, match="max_pixels"):
            read_clip(clip_folder / f"clip.{suffix}", max_pixels=synthetic.WIDTH * synthetic.HEIGHT - 1)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(ClipReadError, match="unsupported"):
        read_clip(path)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_fast_luma_path_equals_swscale_grey(tmp_path, codec: str) -> None:
    import av

    from usvcl_hf.runtime.pyav_frames import frame_to_grey

    path = tmp_path / f"clip_{codec}.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 50, 38, "yuv420p"  # rows padded to the line size
        for _ in range(4):
            picture = rng.integers(0, 256, (38, 50, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            np.testing.assert_array_equal(frame_to_grey(frame), frame.to_ndarray(format="gray"))


@pytest.mark.parametrize("suffix", ["mp4", "avi", "webm"])
def test_decoded_frames_do_not_depend_on_the_decoder_thread_count(clip_folder, suffix, monkeypatch) -> None:
    import usvcl_hf.runtime.video as video

    assert 1 <= decoder_thread_count() <= video.MAX_DECODER_THREADS
    path = clip_folder / f"clip.{suffix}"
    reference = read_clip(path, frame_stride=1).frames
    for threads in (1, 3):
        monkeypatch.setattr(video, "decoder_thread_count", lambda threads=threads: threads)
        np.testing.assert_array_equal(read_clip(path, frame_stride=1).frames, reference)


def large_frames(frame_count: int, height: int, width: int) -> np.ndarray:
    """`(T, H, W)` uint8 frames: a bright moving square on a dark gradient (compresses well at any size)."""
    rows, columns = np.mgrid[0:height, 0:width]
    frames = np.empty((frame_count, height, width), np.uint8)
    for index in range(frame_count):
        frame = 30 + (rows + columns) * 60 // (height + width)
        left = index * (width // 2) // frame_count
        frame[height // 4 : height // 2, left : left + width // 4] = 220
        frames[index] = frame
    return frames


@pytest.mark.parametrize("suffix", ["mp4", "dcm", "png"])
def test_budget_shrinks_large_frames_while_decoding(tmp_path: Path, suffix: str) -> None:
    """A 640x480 source under a 100 px working side is kept as its 6x6 block means (longer side < 200)."""
    frames = large_frames(6, 480, 640)
    path = tmp_path / f"large.{suffix}"
    if suffix == "mp4":
        synthetic.write_video(path, frames)
    elif suffix == "dcm":
        synthetic.write_dicom(path, frames)
    else:
        from PIL import Image

        Image.fromarray(frames[0]).save(path)
    budget = DecodeBudget(max_frames=100, max_pixels=10**9, working_side=100)
    clip = read_clip(path, frame_stride=1, budget=budget)
    assert clip.downscale == 6 and clip.source_size == (480, 640)
    assert clip.frames.shape[1:] == (80, 106)
    expected = frames[: len(clip.frames), :480, :636].reshape(-1, 80, 6, 106, 6).mean(axis=(2, 4))
    tolerance = 0.5 if suffix != "mp4" else 6  # lossless sources: rounding only; H.264: codec error
    assert np.abs(clip.frames - expected).mean() <= tolerance


@pytest.mark.parametrize("known_length", [True, False])
def test_budget_spreads_frames_over_the_whole_clip(clip_folder: Path, monkeypatch, known_length: bool) -> None:
    """At most max_frames kept, evenly spaced, reaching the end: from the header's count, or by halving."""
    if not known_length:
        monkeypatch.setattr(video, "_frame_estimate", lambda *args: None)
    clip = read_clip(clip_folder / "clip.mp4", frame_stride=2, budget=DecodeBudget(max_frames=5, max_pixels=10**9))
    assert len(clip.frames) <= 5
    assert clip.frame_stride > 2
    np.testing.assert_array_equal(clip.frame_indices, np.arange(0, synthetic.FRAME_COUNT, clip.frame_stride))
    assert clip.frame_indices[-1] >= synthetic.FRAME_COUNT - clip.frame_stride


@pytest.mark.parametrize("suffix", ["mp4", "dcm"])
def test_budget_limits_frames_times_pixels(clip_folder: Path, suffix: str) -> None:
    pixels = synthetic.HEIGHT * synthetic.WIDTH
    clip = read_clip(clip_folder / f"clip.{suffix}", frame_stride=1, budget=DecodeBudget(100, max_pixels=4 * pixels))
    assert 1 < len(clip.frames) <= 4


def test_budget_refuses_a_clip_past_max_seconds(clip_folder: Path) -> None:
    budget = DecodeBudget(max_frames=100, max_pixels=10**9, max_seconds=0.5)
    for suffix in ("mp4", "webm"):
        with pytest.raises(ClipTooLongError, match=r"limit of 0\.5 s \(trim it\)"):
            read_clip(clip_folder / f"clip.{suffix}", budget=budget)


@pytest.mark.parametrize("name", ["clip.mpeg", "clip.mpg", "clip.m4v"])
def test_mpeg_containers_are_read(tmp_path: Path, name: str) -> None:
    path = synthetic.write_video(tmp_path / name)
    assert len(read_clip(path, frame_stride=STRIDE).frames) == EXPECTED_KEPT


@pytest.mark.parametrize("name", ["cine.dicom", "cine"])
def test_dicom_with_dicom_suffix_or_none_is_read(clip_folder: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes((clip_folder / "clip.dcm").read_bytes())
    assert len(read_clip(path, frame_stride=STRIDE).frames) == EXPECTED_KEPT


def test_a_file_without_suffix_that_is_not_dicom_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes"
    path.write_text("not a clip")
    with pytest.raises(ClipReadError, match="unsupported file type"):
        read_clip(path)
