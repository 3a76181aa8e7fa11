"""Inputs the model cannot judge get a clear error at every door: too small, or a still image named like a video."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.helpers.paths import REPO_ROOT
from usvcl_hf import UsvclImageProcessor
from usvcl_hf.image_processing_usvcl import MIN_IMAGE_SIDE, image_size_problem
from usvcl_hf.runtime.clip_prediction import read_source
from usvcl_hf.runtime.file_signatures import still_image_format
from usvcl_hf.runtime.video import ClipReadError, read_clip

EXAMPLE_IMAGE = REPO_ROOT / "examples" / "images" / "benign_bus_0002-l.png"


def test_the_size_rule() -> None:
    assert image_size_problem(MIN_IMAGE_SIDE, 500) is None
    assert "31x500 pixels" in image_size_problem(500, 31) and "at least 32 pixels" in image_size_problem(500, 31)


def test_a_one_pixel_image_is_refused_at_the_processor(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"1x1 pixels; the model needs at least 32 pixels on each side"):
        UsvclImageProcessor()(PIL.Image.new("L", (1, 1)))


@pytest.mark.parametrize("crop", [True, False])
def test_a_one_pixel_png_is_refused_by_predict_clip(tmp_path: Path, crop: bool) -> None:
    path = tmp_path / "dot.png"
    PIL.Image.new("L", (1, 1), 200).save(path)
    with pytest.raises(ClipReadError, match=r"dot.png: the image is 1x1 pixels"):
        read_source(path, crop=crop)
    with pytest.raises(ClipReadError, match=r"<image 1>: the image is 20x10 pixels"):
        read_source([np.full((64, 64), 90, np.uint8), np.full((10, 20), 90, np.uint8)], crop=False)


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm"])
def test_a_png_renamed_as_a_video_is_named_as_such(tmp_path: Path, suffix: str) -> None:
    renamed = tmp_path / f"sweep{suffix}"
    shutil.copyfile(EXAMPLE_IMAGE, renamed)
    with pytest.raises(ClipReadError, match=rf"sweep\{suffix}: this is a still PNG image, not a video .* rename it"):
        read_clip(renamed)


def test_signatures(tmp_path: Path) -> None:
    for fmt, expected in (("PNG", "PNG"), ("JPEG", "JPEG"), ("BMP", "BMP"), ("TIFF", "TIFF"), ("GIF", "GIF"),
                          ("WEBP", "WebP")):
        path = tmp_path / f"image.{fmt.lower()}"
        PIL.Image.new("RGB", (8, 8)).save(path, format=fmt)
        assert still_image_format(path)[0] == expected
    clip = REPO_ROOT / "examples" / "clips" / "benign_bus_0007-l_sweep.mp4"
    assert still_image_format(clip) is None
    assert still_image_format(tmp_path / "missing.mp4") is None
