"""One image, one set of pixels at every door: `predict_clip`, the image processor and `pipeline` (issue #18).

8-bit grey, 16-bit, RGBA and float images are written to files, then read through `predict_clip` (which decodes
with `read_clip`), through `UsvclImageProcessor` on the opened PIL image, and through the image-classification
`pipeline` (given the file's array: transformers' `load_image` turns PIL images into 8-bit RGB before any
processor sees them). The `pixel_values` must be identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import pipeline

from tests.helpers.demo_fixtures import save_tiny_classifier
from usvcl_hf.image_processing_usvcl import to_grey_uint8
from usvcl_hf.runtime.clip_prediction import load_model, predict_clip

HEIGHT, WIDTH = 40, 56  # above MIN_IMAGE_SIDE, not square
LOW_16, HIGH_16 = 1000, 4000  # a 12-bit-like range inside 16 bits: dark, as stored (/ 257)


def _scene() -> np.ndarray:
    """`(H, W)` float in [0, 1]: a ramp with a bright disc, not square."""
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    scene = columns / (WIDTH - 1) * 0.6
    scene[(rows - HEIGHT / 2) ** 2 + (columns - WIDTH / 2) ** 2 <= 36] = 1.0
    return scene


def _write(kind: str, folder: Path) -> Path:
    """Write the scene as one kind of image file."""
    scene = _scene()
    if kind == "8-bit":
        image = PIL.Image.fromarray(np.rint(scene * 255).astype(np.uint8), mode="L")
    elif kind == "16-bit":
        image = PIL.Image.fromarray(np.rint(LOW_16 + scene * (HIGH_16 - LOW_16)).astype(np.uint16))
    elif kind == "rgba":
        rgb = np.stack([scene * 255, scene * 200, scene * 100], axis=-1)  # (H, W) -> (H, W, 3)
        alpha = np.full((HEIGHT, WIDTH, 1), 255.0)
        alpha[:, : WIDTH // 4] = 128.0  # partly transparent left quarter
        image = PIL.Image.fromarray(np.rint(np.concatenate([rgb, alpha], axis=-1)).astype(np.uint8), mode="RGBA")
    else:
        image = PIL.Image.fromarray((scene * 3.0 - 0.5).astype(np.float32), mode="F")  # float beyond [0, 1]
    path = folder / f"{kind}.{'tif' if kind == 'float' else 'png'}"
    image.save(path)
    return path


@pytest.fixture(scope="module")
def doors(tmp_path_factory):
    """A tiny classifier (loaded like the demo does), its processor and a pipeline on them."""
    folder = save_tiny_classifier(tmp_path_factory.mktemp("model"))
    model, processor = load_model(folder)
    return model, processor, pipeline("image-classification", model=model, image_processor=processor)


@pytest.mark.parametrize("kind", ["8-bit", "16-bit", "rgba", "float"])
def test_every_door_gives_the_same_pixels(doors, tmp_path: Path, kind: str) -> None:
    model, processor, classify = doors
    path = _write(kind, tmp_path)
    prediction = predict_clip(model, processor, str(path), crop=False)
    through_clip = processor(prediction.frames, return_tensors="pt")["pixel_values"]
    with PIL.Image.open(path) as image:
        through_processor = processor(image, return_tensors="pt")["pixel_values"]
        array = np.asarray(image)
    through_pipeline = classify.preprocess(array)["pixel_values"]
    assert through_clip.shape == (1, 1, model.config.image_size, model.config.image_size)
    torch.testing.assert_close(through_processor, through_clip, rtol=0, atol=0)
    torch.testing.assert_close(through_pipeline, through_clip, rtol=0, atol=0)


def test_8_bit_pil_images_go_through_the_pipeline_unchanged(doors, tmp_path: Path) -> None:
    _, processor, classify = doors
    with PIL.Image.open(_write("8-bit", tmp_path)) as image:
        expected = processor(image, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(classify.preprocess(image)["pixel_values"], expected, rtol=0, atol=0)


def test_16_bit_is_scaled_by_its_bit_depth_not_by_its_own_range(tmp_path: Path) -> None:
    with PIL.Image.open(_write("16-bit", tmp_path)) as image:
        grey = to_grey_uint8(image)
    expected = np.rint((LOW_16 + _scene() * (HIGH_16 - LOW_16)) / 257)  # 0..65535 onto 0..255, not stretched
    assert np.abs(grey.astype(float) - expected).max() <= 1.0 and grey.max() < 20


def test_model_sees_the_same_logits_through_predict_clip_and_a_plain_forward(doors, tmp_path: Path) -> None:
    model, processor, _ = doors
    path = _write("16-bit", tmp_path)
    prediction = predict_clip(model, processor, str(path), crop=False)
    with PIL.Image.open(path) as image, torch.no_grad():
        logits = model(**processor(image, return_tensors="pt")).logits
    positive = model.config.label2id["malignant"]
    assert prediction.frame_probabilities[0] == pytest.approx(float(logits.softmax(-1)[0, positive]), abs=1e-6)
