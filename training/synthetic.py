"""Tiny synthetic clips, images and stores for tests and benchmarks (no real data, deterministic).

A synthetic clip is FRAME_COUNT frames of WIDTH x HEIGHT: a bright blob moving over a speckle-free grey
imaging region, surrounded by a static BORDER-pixel frame with a text-like pattern (a stand-in for scanner UI).
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np

from usvcl_hf.runtime.pyav_frames import write_clip

FRAME_COUNT = 32
WIDTH = 64
HEIGHT = 48
FPS = 25
BORDER = 8
BLOB_RADIUS = 5
BACKGROUND_LEVEL = 60
BLOB_LEVEL = 230
OVERLAY_LEVEL = 200
CONTAINER_CODECS = {"mp4": "libx264", "avi": "mpeg4", "mov": "libx264", "mkv": "libx264", "webm": "libvpx-vp9",
                    "mpeg": "mpeg2video", "mpg": "mpeg1video", "m4v": "mpeg4"}
CODEC_PIXEL_FORMAT = "yuv420p"
BIT_RATE = 4_000_000  # high enough that static overlays survive every codec without flicker
DICOM_FRAME_TIME_MS = 40.0


def synthetic_frames(frame_count: int = FRAME_COUNT, height: int = HEIGHT, width: int = WIDTH,
                     border: int = BORDER) -> np.ndarray:
    """(T, H, W) uint8 frames: moving blob inside, static text-like overlay in the border."""
    rows, columns = np.mgrid[0:height, 0:width]  # (H, W) each
    frames = np.zeros((frame_count, height, width), dtype=np.uint8)
    text_like = ((columns // 2 + rows // 3) % 3 == 0) & ((rows < border // 2) | (columns < border // 2))
    inner_height, inner_width = height - 2 * border, width - 2 * border
    for index in range(frame_count):
        frame = np.zeros((height, width), dtype=np.uint8)
        frame[border:height - border, border:width - border] = BACKGROUND_LEVEL
        phase = 2 * np.pi * index / frame_count
        centre_row = border + inner_height / 2 + (inner_height / 2 - BLOB_RADIUS) * np.sin(phase)
        centre_column = border + inner_width / 2 + (inner_width / 2 - BLOB_RADIUS) * np.cos(phase)
        blob = (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= BLOB_RADIUS**2
        frame[blob] = BLOB_LEVEL
        frame[text_like] = OVERLAY_LEVEL
        frames[index] = frame
    return frames


def write_video(path: Path, frames: np.ndarray | None = None, fps: int = FPS) -> Path:
    """Encode (T, H, W) uint8 frames with PyAV; the codec is chosen by the file suffix."""
    frames = synthetic_frames() if frames is None else frames
    codec = CONTAINER_CODECS[path.suffix.lstrip(".").lower()]
    return write_clip(path, frames, fps, codec=codec, pixel_format=CODEC_PIXEL_FORMAT, bit_rate=BIT_RATE)


def write_dicom(path: Path, frames: np.ndarray | None = None, *, with_pixels: bool = True,
                bits_stored: int | None = None, **tags) -> Path:
    """Uncompressed multi-frame MONOCHROME2 DICOM (no patient data), or one without pixel data.

    8-bit for uint8 frames, 16 bits allocated for uint16 ones, of which `bits_stored` (default all) hold the
    value; `tags` are set as given (e.g. `WindowCenter=..., WindowWidth=...`).
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    frames = synthetic_frames() if frames is None else frames
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path.name)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    from pydicom.dataset import FileDataset

    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "US"
    dataset.Rows, dataset.Columns = frames.shape[1], frames.shape[2]
    dataset.NumberOfFrames = frames.shape[0]
    dataset.FrameTime = DICOM_FRAME_TIME_MS
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = frames.dtype.itemsize * 8
    dataset.BitsStored = bits_stored or dataset.BitsAllocated
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = 0
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    if with_pixels:
        dataset.PixelData = np.ascontiguousarray(frames).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_png_rgba(path: Path, height: int = HEIGHT, width: int = WIDTH) -> Path:
    """Opaque RGBA PNG whose grey value equals its red channel (R = G = B), with a transparent corner."""
    from PIL import Image

    grey = synthetic_frames(1, height, width)[0]
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)  # (H, W) -> (H, W, 4)
    rgba[:BORDER, :BORDER, 3] = 0
    Image.fromarray(rgba, mode="RGBA").save(path)
    return path


def write_png_16bit(path: Path, height: int = HEIGHT, width: int = WIDTH, low: int = 1000,
                    high: int = 41000) -> Path:
    """16-bit greyscale PNG: a horizontal ramp from ``low`` to ``high`` (beyond the 8-bit range)."""
    from PIL import Image

    ramp = np.linspace(low, high, width).round().astype(np.uint16)
    values = np.tile(ramp, (height, 1))  # (W,) -> (H, W)
    Image.fromarray(values.astype(np.uint16)).save(path)
    return path


def write_text_as_mp4(path: Path) -> Path:
    """A text file with a video suffix."""
    path.write_text("this is not a video\n", encoding="utf-8")
    return path


def write_corrupt(path: Path) -> Path:
    """Random bytes with a video suffix (seeded)."""
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def write_truncated(path: Path, source: Path) -> Path:
    """The first third of a valid video file (cut off mid-stream)."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def write_zero_frame_video(path: Path) -> Path:
    """A container (best ``.avi``) with a video stream header but no frames."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CONTAINER_CODECS[path.suffix.lstrip(".").lower()], rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, CODEC_PIXEL_FORMAT
        container.start_encoding()
    return path


def write_grey_png(path: Path, seed: int, height: int = HEIGHT, width: int = WIDTH) -> Path:
    """A seeded random greyscale PNG."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def make_image_class_folder(root: Path, classes: tuple[str, ...] = ("benign", "malignant"),
                            per_class: int = 3) -> Path:
    """ROOT/<class>/p<k>_img<i>.png greyscale images (patient ``p<k>`` shared across a class's images)."""
    for class_index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for image_index in range(per_class):
            patient = f"p{class_index}{image_index // 2}"
            write_grey_png(root / name / f"{patient}_img{image_index}.png", seed=class_index * 100 + image_index)
    return root


def make_frame_store(videos_per_patient: dict[str, int], frames_per_video: int = 4, size: int = 40):
    """A tiny in-memory frame store (``datasets.Dataset``) with the video store's columns."""
    import datasets
    from PIL import Image

    columns: dict[str, list] = {"image": [], "video_id": [], "patient_id": [], "frame_index": [], "source": []}
    seed = 0
    for patient, video_count in sorted(videos_per_patient.items()):
        for video in range(video_count):
            for frame_index in range(frames_per_video):
                seed += 1
                pixels = np.random.default_rng(seed).integers(0, 256, (size, size + 8), dtype=np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
                columns["image"].append({"bytes": buffer.getvalue(), "path": None})
                columns["video_id"].append(f"{patient}_v{video}")
                columns["patient_id"].append(patient)
                columns["frame_index"].append(frame_index)
                columns["source"].append(f"{patient}_v{video}.mp4")
    features = datasets.Features({
        "image": datasets.Image(),
        "video_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "frame_index": datasets.Value("int32"),
        "source": datasets.Value("string"),
    })
    return datasets.Dataset.from_dict(columns, features=features)
