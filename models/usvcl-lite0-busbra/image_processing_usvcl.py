"""Image processor for usvcl: any common image type -> 8-bit greyscale, aspect-preserving resize, normalisation.

`to_grey_uint8` is the ONE greyscale conversion of the project: `usvcl_hf.runtime.video.read_clip` (stores,
`predict_clip`, the demo) and this processor (`pipeline`, `from_pretrained` users) both call it, so one image gives
the same pixels at every door. Pixel values are scaled by the range their encoding can store, never by the image's
own min/max, so one picture gives one answer whatever its encoding: 8-bit images are used as they are, 16-bit ones
are divided by 257 (0..65535 onto 0..255), other integer types by their type's range, floats are read as [0, 1] and
booleans as {0, 255}; a caller that knows the stored range (DICOM: `BitsStored`, rescale, window) passes it as
`value_range`. Colour becomes ITU-R 601 luma and alpha is composited over black.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

UINT8_MAX = 255
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")
RGB_CHANNELS = 3
RGBA_CHANNELS = 4
CHANNEL_COUNTS = (1, RGB_CHANNELS, RGBA_CHANNELS)
RESIZE_MODES = ("pad", "crop")
DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.25
# Smallest image side accepted. The timm CNN backbones used here (DenseNet, ResNet, EfficientNet) reduce the image
# 32-fold before pooling, so a side under 32 pixels holds less than one cell of their last feature map: scaled up to
# `image_size` it only repeats pixels, and the model would judge detail that is not there. Real ultrasound frames
# are hundreds of pixels (BUS-BRA: 224 px shorter side here).
MIN_IMAGE_SIDE = 32
PALETTE_MODES = ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1", "LA", "La", "RGBa")
OVERRIDABLE = ("image_size", "in_chans", "resize_mode", "image_mean", "image_std", "do_normalize", "min_image_side")
# Processor options for images whose size was checked before a crop (`predict_clip`'s imaging-region and lesion
# crops, Grad-CAM of its frames, the two-view pipeline's lesion crop): a crop may be smaller than the source without
# the source being too small.
CHECKED_SIZES = {"min_image_side": 1}


def stored_range(dtype: np.dtype) -> tuple[float, float]:
    """The range of values an encoding can store: integers their type's [0, max] (uint16: [0, 65535]), floats
    [0, 1], booleans [0, 1]."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 0.0, 1.0
    if np.issubdtype(dtype, np.integer):
        return 0.0, float(np.iinfo(dtype).max)
    return 0.0, 1.0


def scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map values linearly from `[low, high]` onto [0, 255] uint8, rounded; values outside are clipped."""
    if not high > low:
        raise ValueError(f"A value range needs high > low, got [{low}, {high}].")
    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    scaled = (values - low) * (UINT8_MAX / (high - low))
    return np.clip(np.rint(scaled), 0, UINT8_MAX).astype(np.uint8)


def colour_to_grey(pixels: np.ndarray) -> np.ndarray:
    """`(..., 3)` RGB or `(..., 4)` RGBA uint8 pixels -> `(...)` uint8 luma, alpha composited over black."""
    luma = pixels[..., :RGB_CHANNELS].astype(np.float32) @ LUMA_WEIGHTS  # (..., 3) -> (...)
    if pixels.shape[-1] == RGBA_CHANNELS:
        luma = luma * (pixels[..., RGB_CHANNELS].astype(np.float32) / UINT8_MAX)
    return np.clip(np.rint(luma), 0, UINT8_MAX).astype(np.uint8)


def _array_from_pil(image: PIL.Image.Image) -> np.ndarray:
    """A PIL image as an `(H, W)` or `(H, W, C)` array, keeping 16-bit and float depth."""
    if image.mode in PALETTE_MODES or (image.mode in ("L", "RGB") and "transparency" in image.info):
        has_alpha = "A" in image.mode or "a" in image.mode or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
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


def array_to_grey(array: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """An `(H, W)`, `(H, W, C)` or `(C, H, W)` array of any dtype -> `(H, W)` uint8 grey (rules in the module doc).

    `value_range` (low, high): the range the grey or colour values were stored in, mapped onto [0, 255]; default
    `stored_range` of the array's dtype. Alpha is always read by its type's range.
    """
    pixels = _channels_last(np.asarray(array))  # (H, W, C)
    if pixels.dtype != np.uint8 or value_range is not None:
        colour = scale_to_uint8(pixels[..., :RGB_CHANNELS], *(value_range or stored_range(pixels.dtype)))
        if pixels.shape[-1] == RGBA_CHANNELS:
            alpha = pixels[..., RGB_CHANNELS:]
            colour = np.concatenate([colour, scale_to_uint8(alpha, *stored_range(alpha.dtype))], axis=-1)
        pixels = colour  # (H, W, C) uint8
    if pixels.shape[-1] == 1:
        return pixels[..., 0]  # (H, W, 1) -> (H, W)
    return colour_to_grey(pixels)  # (H, W, 3 or 4) -> (H, W)


def to_grey_uint8(image: Any, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """PIL image, numpy array or tensor in any common mode (L, RGB, RGBA, P, 16-bit, float) -> `(H, W)` uint8.

    `value_range`: see `array_to_grey` (default: the range of the image's encoding, e.g. 16-bit: [0, 65535]).
    """
    if isinstance(image, PIL.Image.Image):
        if image.mode == "L" and "transparency" not in image.info and value_range is None:
            return np.asarray(image, dtype=np.uint8)
        return array_to_grey(_array_from_pil(image), value_range)
    if isinstance(image, torch.Tensor):
        return array_to_grey(image.detach().cpu().numpy(), value_range)
    return array_to_grey(np.asarray(image), value_range)


def to_grey_float(image: Any) -> np.ndarray:
    """`to_grey_uint8(image) / 255`: `(H, W)` float32 in [0, 1]."""
    return to_grey_uint8(image).astype(np.float32) / UINT8_MAX


def normalize(pixels: Any, mean: Any, std: Any) -> Any:
    r"""`(x - mean) / std` per channel on `(..., C, H, W)` numpy arrays or tensors; `mean`, `std` hold C values."""
    if isinstance(pixels, torch.Tensor):
        mean = torch.as_tensor(mean, dtype=pixels.dtype, device=pixels.device)
        std = torch.as_tensor(std, dtype=pixels.dtype, device=pixels.device)
    else:
        mean, std = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    return (pixels - mean[:, None, None]) / std[:, None, None]  # (C,) -> (C, 1, 1), broadcast over (..., C, H, W)


def check_resize_mode(mode: str) -> None:
    """Raise a `ValueError` unless `mode` is one of `RESIZE_MODES`."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"`resize_mode` must be one of {list(RESIZE_MODES)}, got {mode!r}.")


def resize_to_square(grey: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """Resize `(H, W)` float pixels to `(size, size)` keeping the aspect ratio.

    `"pad"` scales the longer side to `size` and centres the image on black; `"crop"` scales the shorter side to
    `size` and takes the centre square. Neither stretches.
    """
    check_resize_mode(mode)
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


def _as_image_list(images: Any) -> list:
    """One image, a list of them, or a `(B, ...)` array/tensor batch -> a non-empty list of images."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise ValueError("No image was given to the image processor.")
    return list(images)


class UsvclImageProcessor(BaseImageProcessor):
    r"""
    Turns images of any common type into the `pixel_values` a usvcl model takes.

    Steps: 8-bit greyscale (`to_grey_uint8`) scaled to [0, 1], aspect-preserving resize to `image_size` x
    `image_size` (`resize_mode` `"pad"` or `"crop"`), replication to `in_chans` channels,
    `(x - image_mean) / image_std`. Every argument can also be given per call to `preprocess` / `__call__`.

    Note: `pipeline("image-classification")` converts PIL images and paths to 8-bit RGB (transformers'
    `load_image`) before they reach this processor, which clips 16-bit and float images; give the pipeline a numpy
    array (`np.asarray(PIL.Image.open(path))`) to keep them, and a DICOM file as the grey image `usvcl_hf.runtime.video`
    reads from it (`read_clip(path, max_frames=1).frames[0]`: `BitsStored`, rescale and window applied).

    Args:
        image_size (`int`, defaults to 224): output side.
        in_chans (`int`, defaults to 1): output channels (the grey image is repeated for 3).
        resize_mode (`str`, defaults to `"pad"`): `"pad"` (letterbox, nothing cut) or `"crop"` (centre crop).
        image_mean (`list[float]`, defaults to `[0.5] * in_chans`), image_std (`list[float]`, defaults to
            `[0.25] * in_chans`): normalisation applied per channel.
        do_normalize (`bool`, defaults to `True`).
        mask_threshold (`float`, defaults to 0.5): lesion probability at and above which
            `post_process_semantic_segmentation` calls a pixel lesion (lesion models only).
        min_image_side (`int`, defaults to `MIN_IMAGE_SIDE` = 32): smaller images raise a `ValueError` that says why
            (`predict_clip` checks frames as decoded, before its crop, and passes 1 per call).
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
        self.image_size = image_size
        self.in_chans = in_chans
        self.resize_mode = resize_mode
        self.image_mean = list(image_mean) if image_mean is not None else [DEFAULT_MEAN] * in_chans
        self.image_std = list(image_std) if image_std is not None else [DEFAULT_STD] * in_chans
        self.do_normalize = do_normalize
        self.mask_threshold = mask_threshold
        self.min_image_side = int(min_image_side)
        self._check(self.settings())

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The processing arguments, with per-call `overrides` (None = keep); unknown names raise a `ValueError`."""
        unknown = sorted(set(overrides) - set(OVERRIDABLE))
        if unknown:
            raise ValueError(f"UsvclImageProcessor does not take {unknown}; per-call options are {list(OVERRIDABLE)}.")
        settings = {name: getattr(self, name) for name in OVERRIDABLE}
        settings.update({name: value for name, value in overrides.items() if value is not None})
        self._check(settings)
        return settings

    @staticmethod
    def _check(settings: dict[str, Any]) -> None:
        """Raise a `ValueError` for unusable processing arguments."""
        check_resize_mode(settings["resize_mode"])
        in_chans = settings["in_chans"]
        if in_chans not in (1, 3):
            raise ValueError(f"`in_chans` must be 1 or 3, got {in_chans}.")
        if int(settings["image_size"]) < 1:
            raise ValueError(f"`image_size` must be positive, got {settings['image_size']}.")
        mean, std = settings["image_mean"], settings["image_std"]
        if len(mean) != in_chans or len(std) != in_chans or min(std) <= 0:
            raise ValueError(f"`image_mean` and `image_std` need {in_chans} values each, with std > 0.")

    def process_one(self, image: Any, **overrides: Any) -> np.ndarray:
        """One image -> `(in_chans, image_size, image_size)` float32."""
        settings = self.settings(**overrides)
        grey = to_grey_float(image)  # (H, W)
        problem = image_size_problem(*grey.shape, int(settings["min_image_side"]))
        if problem:
            raise ValueError(f"Cannot classify this image: {problem}.")
        square = resize_to_square(grey, int(settings["image_size"]), settings["resize_mode"])  # (S, S)
        channels = np.repeat(square[None], settings["in_chans"], axis=0)  # (S, S) -> (C, S, S)
        if settings["do_normalize"]:
            channels = normalize(channels, settings["image_mean"], settings["image_std"])
        return channels.astype(np.float32)

    def preprocess(self, images: Any, return_tensors: str | None = None, **kwargs) -> BatchFeature:
        """One image or a list of them (or a `(B, ...)` array/tensor batch) -> `pixel_values (B, C, S, S)`.

        Keyword arguments named in `OVERRIDABLE` replace the processor's own values for this call; any other
        keyword raises a `ValueError` (nothing is silently ignored).
        """
        settings = self.settings(**kwargs)
        pixel_values = np.stack([self.process_one(image, **settings) for image in _as_image_list(images)])
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)  # (B, C, S, S)

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
    "CHECKED_SIZES",
    "MIN_IMAGE_SIDE",
    "UINT8_MAX",
    "UsvclImageProcessor",
    "image_size_problem",
    "normalize",
    "resize_to_square",
    "scale_to_uint8",
    "square_to_frame",
    "stored_range",
    "to_grey_float",
    "to_grey_uint8",
]
