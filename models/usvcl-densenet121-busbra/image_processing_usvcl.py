"""Image processor for usvcl: any common image type -> greyscale, aspect-preserving resize, normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

UINT8_MAX = 255.0
UINT16_MAX = 65535.0
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")
CHANNEL_COUNTS = (1, 3, 4)
RESIZE_MODES = ("pad", "crop")
DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.25
# Smallest image side accepted. The timm CNN backbones used here (DenseNet, ResNet, EfficientNet) reduce the image
# 32-fold before pooling, so a side under 32 pixels holds less than one cell of their last feature map: scaled up to
# `image_size` it only repeats pixels, and the model would judge detail that is not there. Real ultrasound frames
# are hundreds of pixels (BUS-BRA: 224 px shorter side here).
MIN_IMAGE_SIDE = 32


def _array_from_pil(image: PIL.Image.Image) -> np.ndarray:
    """A PIL image as an `(H, W)` or `(H, W, C)` array, keeping 16-bit and float depth."""
    if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    if image.mode.startswith("I;16"):
        return np.asarray(image, dtype=np.uint16)
    return np.asarray(image)


def _channels_last(array: np.ndarray) -> np.ndarray:
    """`(H, W)`, `(H, W, C)` or `(C, H, W)` with C in 1, 3, 4 -> `(H, W, C)`."""
    if array.ndim == 2:
        return array[:, :, None]  # (H, W) -> (H, W, 1)
    if array.ndim != 3:
        raise ValueError(f"An image must have 2 or 3 dimensions, got shape {array.shape}.")
    if array.shape[-1] in CHANNEL_COUNTS:
        return array
    if array.shape[0] in CHANNEL_COUNTS:
        return np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
    raise ValueError(f"Cannot find the channel axis (1, 3 or 4 channels) in an image of shape {array.shape}.")


def _unit_range(array: np.ndarray) -> np.ndarray:
    """Scale integer or float pixels to float32 in [0, 1] by the type's range (never by the image's own maximum)."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / UINT8_MAX
    if np.issubdtype(array.dtype, np.integer):
        return np.clip(array.astype(np.float32) / UINT16_MAX, 0.0, 1.0)
    array = np.nan_to_num(array.astype(np.float32))
    if array.size and array.max() > 1.0:
        array = array / UINT8_MAX
    return np.clip(array, 0.0, 1.0)


def to_grey_float(image: Any) -> np.ndarray:
    """PIL image, numpy array or tensor in any common mode (L, RGB, RGBA, 16-bit, float) -> `(H, W)` float32 in [0, 1].

    Colour is turned into luma; an alpha channel is composited over black (the ultrasound background).
    """
    if isinstance(image, PIL.Image.Image):
        array = _array_from_pil(image)
    elif isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
    else:
        array = np.asarray(image)
    pixels = _unit_range(_channels_last(array))  # (H, W, C)
    if pixels.shape[-1] == 4:
        pixels = pixels[..., :3] * pixels[..., 3:]  # (H, W, 4) -> (H, W, 3) over black
    if pixels.shape[-1] == 3:
        return pixels @ LUMA_WEIGHTS  # (H, W, 3) -> (H, W)
    return pixels[..., 0]  # (H, W, 1) -> (H, W)


def resize_to_square(grey: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """Resize `(H, W)` float pixels to `(size, size)` keeping the aspect ratio.

    `"pad"` scales the longer side to `size` and centres the image on black; `"crop"` scales the shorter side to
    `size` and takes the centre square. Neither stretches.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"`resize_mode` must be one of {list(RESIZE_MODES)}, got {mode!r}.")
    height, width = grey.shape
    if height < 1 or width < 1:
        raise ValueError(f"An image must have at least one pixel, got shape {grey.shape}.")
    scale = size / (max(height, width) if mode == "pad" else min(height, width))
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    resized = np.asarray(
        PIL.Image.fromarray(grey.astype(np.float32), mode="F").resize((new_width, new_height), PIL.Image.BILINEAR)
    )
    if mode == "pad":
        canvas = np.zeros((size, size), dtype=np.float32)
        top, left = (size - new_height) // 2, (size - new_width) // 2
        canvas[top : top + new_height, left : left + new_width] = resized
        return canvas
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return resized[top : top + size, left : left + size]


def square_to_frame(square_map: np.ndarray, height: int, width: int, resize_mode: str) -> np.ndarray:
    """Map an `(S, S)` map on the processor's square input back onto an `(height, width)` frame.

    Inverse of `resize_to_square`: `"pad"` removes the letterbox bars and rescales; `"crop"` rescales and leaves
    zeros where the centre crop cut the frame.
    """
    size = square_map.shape[0]
    scale = size / (max(height, width) if resize_mode == "pad" else min(height, width))
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    if resize_mode == "pad":
        top, left = (size - new_height) // 2, (size - new_width) // 2
        resized = square_map[top : top + new_height, left : left + new_width]  # (new_h, new_w)
    else:
        top, left = (new_height - size) // 2, (new_width - size) // 2
        resized = np.zeros((new_height, new_width), dtype=np.float32)
        resized[top : top + size, left : left + size] = square_map
    image = PIL.Image.fromarray(resized.astype(np.float32), mode="F").resize((width, height), PIL.Image.BILINEAR)
    return np.asarray(image, dtype=np.float32)  # (H, W)


def image_size_problem(height: int, width: int, min_side: int = MIN_IMAGE_SIDE) -> str | None:
    """Why an `(height, width)` image is too small for the model (see `MIN_IMAGE_SIDE`), or None when it is not."""
    if min(height, width) >= min_side:
        return None
    return (
        f"the image is {width}x{height} pixels; the model needs at least {min_side} pixels on each side (its "
        f"backbone reduces the image {MIN_IMAGE_SIDE}-fold, so a smaller one has less than one cell of its last "
        "feature map and scaling it up would invent the detail the model judges)"
    )


class UsvclImageProcessor(BaseImageProcessor):
    r"""
    Turns images of any common type into the `pixel_values` a usvcl model takes.

    Steps: greyscale float in [0, 1] (`to_grey_float`), aspect-preserving resize to `image_size` x `image_size`
    (`resize_mode` `"pad"` or `"crop"`), replication to `in_chans` channels, `(x - image_mean) / image_std`.

    Args:
        image_size (`int`, defaults to 224): output side.
        in_chans (`int`, defaults to 1): output channels (the grey image is repeated for 3).
        resize_mode (`str`, defaults to `"pad"`): `"pad"` (letterbox, nothing cut) or `"crop"` (centre crop).
        image_mean (`list[float]`, defaults to `[0.5] * in_chans`), image_std (`list[float]`, defaults to
            `[0.25] * in_chans`): normalisation applied per channel.
        do_normalize (`bool`, defaults to `True`).
        mask_threshold (`float`, defaults to 0.5): lesion probability at and above which
            `post_process_semantic_segmentation` calls a pixel lesion (lesion models only).
        min_image_side (`int`, defaults to `MIN_IMAGE_SIDE` = 32): smaller images raise a `ValueError` that says why.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        image_size: int = 224,
        in_chans: int = 1,
        resize_mode: str = "pad",
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        do_normalize: bool = True,
        mask_threshold: float = 0.5,
        min_image_side: int = MIN_IMAGE_SIDE,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"`resize_mode` must be one of {list(RESIZE_MODES)}, got {resize_mode!r}.")
        if in_chans not in (1, 3):
            raise ValueError(f"`in_chans` must be 1 or 3, got {in_chans}.")
        self.image_size = image_size
        self.in_chans = in_chans
        self.resize_mode = resize_mode
        self.image_mean = list(image_mean) if image_mean is not None else [DEFAULT_MEAN] * in_chans
        self.image_std = list(image_std) if image_std is not None else [DEFAULT_STD] * in_chans
        self.do_normalize = do_normalize
        self.mask_threshold = mask_threshold
        self.min_image_side = int(min_image_side)
        if len(self.image_mean) != in_chans or len(self.image_std) != in_chans or min(self.image_std) <= 0:
            raise ValueError(f"`image_mean` and `image_std` need {in_chans} values each, with std > 0.")

    def process_one(self, image: Any, min_image_side: int | None = None) -> np.ndarray:
        """One image -> `(in_chans, image_size, image_size)` float32 (`min_image_side` overrides the processor's)."""
        grey = to_grey_float(image)  # (H, W)
        problem = image_size_problem(*grey.shape, self.min_image_side if min_image_side is None else min_image_side)
        if problem:
            raise ValueError(f"Cannot classify this image: {problem}.")
        square = resize_to_square(grey, self.image_size, self.resize_mode)  # (S, S)
        channels = np.repeat(square[None], self.in_chans, axis=0)  # (S, S) -> (C, S, S)
        if self.do_normalize:
            mean = np.asarray(self.image_mean, dtype=np.float32)[:, None, None]
            std = np.asarray(self.image_std, dtype=np.float32)[:, None, None]
            channels = (channels - mean) / std
        return channels.astype(np.float32)

    def preprocess(
        self, images: Any, return_tensors: str | None = None, min_image_side: int | None = None, **kwargs
    ) -> BatchFeature:
        """One image or a list of them (or a `(B, ...)` array/tensor batch) -> `pixel_values (B, C, S, S)`.

        `min_image_side` overrides the processor's for this call (`predict_clip` checks the frames as decoded,
        before its imaging-region crop, and passes 1).
        """
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("No image was given to the image processor.")
        pixel_values = np.stack([self.process_one(image, min_image_side) for image in images])  # (B, C, S, S)
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: list[tuple[int, int]] | None = None, threshold: float | None = None
    ) -> list[torch.Tensor]:
        """Lesion masks from a lesion model's output `logits (B, 1, S, S)`: one `(H, W)` long tensor per image
        (1 = lesion, 0 = background) at `target_sizes[b] = (H, W)` (the input's size; the letterbox or crop is
        undone, `square_to_frame`), or `(S, S)` without `target_sizes`. A pixel is lesion when its probability
        `sigmoid(logit)` is at least `threshold` (default `mask_threshold`, 0.5)."""
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        probabilities = torch.sigmoid(logits.detach().float()[:, 0]).cpu().numpy()  # (B, 1, S, S) -> (B, S, S)
        if target_sizes is not None and len(target_sizes) != len(probabilities):
            raise ValueError(f"`target_sizes` has {len(target_sizes)} sizes for {len(probabilities)} images.")
        cut = self.mask_threshold if threshold is None else threshold
        masks = []
        for index, square in enumerate(probabilities):
            if target_sizes is not None:
                height, width = (int(side) for side in target_sizes[index])
                square = square_to_frame(square, height, width, self.resize_mode)  # (S, S) -> (H, W)
            masks.append(torch.from_numpy((square >= cut).astype(np.int64)))
        return masks

    def __call__(self, images: Any, **kwargs) -> BatchFeature:
        """Same as `preprocess`."""
        return self.preprocess(images, **kwargs)


__all__ = [
    "MIN_IMAGE_SIDE",
    "UsvclImageProcessor",
    "image_size_problem",
    "resize_to_square",
    "square_to_frame",
    "to_grey_float",
]
