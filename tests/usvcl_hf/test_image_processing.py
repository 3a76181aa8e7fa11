"""UsvclImageProcessor: every common image mode, odd sizes, aspect-preserving resize."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from usvcl_hf import UsvclImageProcessor
from usvcl_hf.image_processing_usvcl import resize_to_square, to_grey_float, to_grey_uint8

SIZE = 32
ODD_SHAPE = (37, 53)  # (H, W)


def _grey_picture() -> np.ndarray:
    """A smooth 8-bit picture with an odd size spanning 0..255 (deeper modes are rescaled by their own range)."""
    rows, cols = np.mgrid[0 : ODD_SHAPE[0], 0 : ODD_SHAPE[1]]
    wave = np.sin(rows / 5.0) * np.cos(cols / 7.0)
    return np.rint((wave - wave.min()) / (wave.max() - wave.min()) * 255).astype(np.uint8)


def _same_picture_in_every_mode() -> dict:
    grey = _grey_picture()
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgba = np.concatenate([rgb, np.full((*grey.shape, 1), 255, np.uint8)], axis=-1)
    return {
        "L": PIL.Image.fromarray(grey, mode="L"),
        "RGB": PIL.Image.fromarray(rgb, mode="RGB"),
        "RGBA": PIL.Image.fromarray(rgba, mode="RGBA"),
        "I;16": PIL.Image.fromarray(grey.astype(np.uint16) * 257),
        "F": PIL.Image.fromarray(grey.astype(np.float32) / 255.0, mode="F"),
        "numpy_uint8": grey,
        "numpy_float": grey.astype(np.float64) / 255.0,
        "numpy_hwc": rgb,
        "torch_chw": torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),
        "numpy_uint16": grey.astype(np.uint16) * 257,
    }


@pytest.mark.parametrize("mode", list(_same_picture_in_every_mode()))
def test_every_mode_gives_the_same_pixel_values(mode: str) -> None:
    processor = UsvclImageProcessor(image_size=SIZE)
    pictures = _same_picture_in_every_mode()
    reference = processor(pictures["L"], return_tensors="pt")["pixel_values"]
    pixel_values = processor(pictures[mode], return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 1, SIZE, SIZE) and pixel_values.dtype == torch.float32
    torch.testing.assert_close(pixel_values, reference, rtol=0, atol=0.02)


def test_i16_is_scaled_by_its_bit_depth_not_stretched() -> None:
    ramp = np.arange(1000, 1000 + 64 * 64, dtype=np.uint16).reshape(64, 64)  # 12-bit-like values in 16 bits
    grey = to_grey_uint8(PIL.Image.fromarray(ramp))
    np.testing.assert_array_equal(grey, np.rint(ramp / 257).astype(np.uint8))  # dark, as stored; not 0..255
    np.testing.assert_array_equal(to_grey_uint8(ramp, value_range=(1000, 1000 + 64 * 64 - 1)).max(), 255)


def test_per_call_overrides_are_honoured_and_unknown_ones_rejected() -> None:
    processor = UsvclImageProcessor(image_size=SIZE)
    picture = _grey_picture()
    pixel_values = processor(picture, image_size=16, in_chans=3, image_mean=[0, 0, 0], image_std=[1, 1, 1],
                             return_tensors="np")["pixel_values"]
    assert pixel_values.shape == (1, 3, 16, 16) and pixel_values.min() >= 0.0
    unnormalised = processor(picture, do_normalize=False, return_tensors="np")["pixel_values"]
    assert unnormalised.min() >= 0.0 and unnormalised.max() <= 1.0
    assert processor.image_size == SIZE and processor.in_chans == 1  # the processor itself is unchanged
    with pytest.raises(ValueError, match="does not take"):
        processor(picture, size={"height": 8, "width": 8})
    with pytest.raises(ValueError, match="resize_mode"):
        processor(picture, resize_mode="stretch")


def test_rgba_alpha_is_composited_over_black() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent
    grey = to_grey_float(PIL.Image.fromarray(rgba, mode="RGBA"))
    assert grey[:2].min() == pytest.approx(200 / 255, abs=1e-3) and grey[2:].max() == 0.0


def test_pad_keeps_aspect_ratio() -> None:
    wide = np.ones((10, 40), dtype=np.float32)
    square = resize_to_square(wide, SIZE, "pad")
    rows_with_image = np.flatnonzero(square.max(axis=1) > 0.5)
    assert square.shape == (SIZE, SIZE)
    assert len(rows_with_image) == SIZE * 10 // 40  # height scaled like the width: no stretching
    assert square[0].max() == 0.0 and square[-1].max() == 0.0


def test_crop_keeps_aspect_ratio() -> None:
    wide = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (10, 1))
    square = resize_to_square(wide, SIZE, "crop")
    assert square.shape == (SIZE, SIZE)
    assert 0.3 < square.mean() < 0.7 and square[:, 0].mean() > 0.2  # the centre of the ramp, not its left end


def test_batches_three_channels_and_normalisation() -> None:
    processor = UsvclImageProcessor(image_size=SIZE, in_chans=3)
    pictures = [np.zeros((40, 60), np.uint8), np.full((62, 34), 255, np.uint8)]
    pixel_values = processor(pictures, return_tensors="np")["pixel_values"]
    assert pixel_values.shape == (2, 3, SIZE, SIZE)
    assert np.allclose(pixel_values[0], (0 - 0.5) / 0.25)
    assert pixel_values[1].max() == pytest.approx((1 - 0.5) / 0.25)


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4, 5, 6)), np.zeros((5, 7, 2))])
def test_unusable_arrays_raise(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        UsvclImageProcessor(image_size=SIZE)(bad)


def test_processor_round_trip(tmp_path) -> None:
    processor = UsvclImageProcessor(image_size=48, resize_mode="crop", image_mean=[0.4], image_std=[0.2])
    processor.save_pretrained(tmp_path)
    reloaded = UsvclImageProcessor.from_pretrained(tmp_path)
    assert (reloaded.image_size, reloaded.resize_mode, reloaded.image_mean) == (48, "crop", [0.4])
