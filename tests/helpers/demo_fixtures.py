"""Helpers for the demo tests: a tiny saved classifier and distinct synthetic clips (no real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training import synthetic

TINY_IMAGE_SIZE = 64
TINY_CLASSIFIER = dict(
    backbone="resnet18",
    image_size=TINY_IMAGE_SIZE,
    embedding_dim=8,
    projection_hidden_dim=0,
    classifier_hidden_dim=8,
)


def save_tiny_classifier(folder: Path, **overrides) -> Path:
    """Save a random resnet18 classifier at 64 px, with its image processor, as a Hub-style folder."""
    import torch

    from usvcl_hf import UsvclConfig, UsvclForImageClassification, UsvclImageProcessor

    torch.manual_seed(0)
    config = UsvclConfig(**{**TINY_CLASSIFIER, **overrides})
    UsvclForImageClassification(config).save_pretrained(folder)
    UsvclImageProcessor(image_size=config.image_size, resize_mode=config.resize_mode).save_pretrained(folder)
    return folder


def assert_same_outputs(model, rewritten, pixels) -> None:
    """`model` and an inference rewrite of it (BatchNorms folded, padding made static) give the same outputs on
    `pixels` (`(B, C, H, W)`), within float rounding relative to each output's scale."""
    import torch

    with torch.no_grad():
        expected, got = model(pixel_values=pixels).to_tuple(), rewritten(pixel_values=pixels).to_tuple()
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * max(1.0, a.abs().max().item()))


def write_clip(path: Path, frame_count: int = synthetic.FRAME_COUNT, shift: int = 0) -> Path:
    """A synthetic H.264 clip (moving blob, static overlay); `shift` rolls the frames to make distinct files."""
    frames = np.roll(synthetic.synthetic_frames(frame_count), shift, axis=2)
    return synthetic.write_video(path, frames)


def write_png(path: Path, height: int = 40, width: int = 72, seed: int = 0) -> Path:
    """A grey PNG with a bright ellipse on noise (not square, so the letterbox matters)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    image = rng.integers(20, 90, (height, width))
    image[((rows - height / 2) / (height / 4)) ** 2 + ((columns - width / 2) / (width / 5)) ** 2 <= 1] = 220
    Image.fromarray(image.astype(np.uint8)).save(path)
    return path


TINY_LESION_MODEL = dict(backbone="test_efficientnet", image_size=TINY_IMAGE_SIZE, decoder_channels=[16, 8])


def save_tiny_lesion_model(folder: Path, **overrides) -> Path:
    """Save a random lesion segmenter (timm `test_efficientnet`, 64 px) with its image processor, Hub-style."""
    import torch

    from usvcl_hf import LesionConfig, LesionSegmentationModel, UsvclImageProcessor

    torch.manual_seed(0)
    config = LesionConfig(**{**TINY_LESION_MODEL, **overrides})
    LesionSegmentationModel(config).save_pretrained(folder)
    UsvclImageProcessor(image_size=config.image_size, resize_mode=config.resize_mode,
                        mask_threshold=config.mask_threshold).save_pretrained(folder)
    return folder
