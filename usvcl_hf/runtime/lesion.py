"""Lesion-model inference on frames: loading, batched lesion probabilities, masks at frame size, outlines.

Used by `predict_clip` (which frames show a lesion), the demo (outline on the most suspicious frame) and
`training.prepare_data videos --lesion-model` (keep lesion frames only). Not a Hub file.

    from usvcl_hf.runtime.lesion import load_lesion_model, frame_lesion_probabilities
    lesion_model, lesion_processor = load_lesion_model("models/usvcl-lesion-busbra")
    probabilities = frame_lesion_probabilities(lesion_model, lesion_processor, frames)  # (T,)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageFilter
import torch

from ..configuration_lesion import NO_LESION_LABEL
from ..image_processing_usvcl import UINT8_MAX, to_grey_float, to_grey_uint8
from .inference_prep import prepare_for_inference
from .input_checks import CHECKED_SIZES

DEFAULT_LESION_BATCH_SIZE = 16
OUTLINE_COLOUR = (0, UINT8_MAX, 0)
OUTLINE_WIDTH = 3  # pixels of the outline drawn around a mask (odd: a centred max filter)


def check_model_location(name: str, what: str = "Model") -> None:
    """Raise `FileNotFoundError` for a local-looking path (./, /, ~) that does not exist (Hub ids pass)."""
    if name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
        raise FileNotFoundError(f"{what} folder {name} does not exist.")


def load_lesion_model(
    model_id_or_dir: str | Path, device: str | torch.device | None = None, fold_batchnorm: bool = True,
    static_padding: bool = True,
) -> tuple[Any, Any]:
    """A lesion segmenter and its image processor (Auto classes, `trust_remote_code=True`), ready for inference
    (`usvcl_hf.runtime.inference_prep.prepare_for_inference`, as `usvcl_hf.runtime.clip_prediction.load_model`).

    Raises `FileNotFoundError` for a local-looking path that does not exist, `ValueError` for a model that is not
    a lesion segmenter, `OSError` when loading fails.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

    name = str(model_id_or_dir)
    check_model_location(name, "Lesion model")
    config = AutoConfig.from_pretrained(name, trust_remote_code=True)
    if not hasattr(config, "lesion_threshold"):
        raise ValueError(f"{name} is a {config.model_type!r} model, not a lesion segmenter (no `lesion_threshold`).")
    model = AutoModelForSemanticSegmentation.from_pretrained(name, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=True)
    if device is not None:
        model = model.to(device)
    return prepare_for_inference(model, fold_batchnorm, static_padding), processor


def _batches(frames: Sequence[Any], batch_size: int) -> Iterable[list[Any]]:
    """Consecutive slices of `frames` of at most `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    for start in range(0, len(frames), batch_size):
        yield list(frames[start : start + batch_size])


def frame_lesion_probabilities(
    model: Any, processor: Any, frames: Sequence[Any], batch_size: int = DEFAULT_LESION_BATCH_SIZE,
    progress: Any = None,
) -> np.ndarray:
    """Probability `(T,)` that each frame shows a lesion (`output.lesion_probability`; `frame_lesions` without
    masks)."""
    return frame_lesions(model, processor, frames, batch_size, progress, with_masks=False)[0]


def frame_lesions(
    model: Any, processor: Any, frames: Sequence[Any], batch_size: int = DEFAULT_LESION_BATCH_SIZE,
    progress: Any = None, with_masks: bool = True,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Lesion probability `(T,)` of each frame and, with `with_masks`, its boolean lesion mask `(H, W)` at the
    frame's own size (`post_process_semantic_segmentation` at `model.config.mask_threshold`), in one batched pass
    under `inference_mode`. Frames are taken as checked when decoded (`CHECKED_SIZES`: an imaging-region crop may
    be small). `progress`, when given, is called with each batch's size (e.g. `tqdm.update`)."""
    parameter = next(model.parameters())
    probabilities, masks = [np.zeros(0)], []
    with torch.inference_mode():
        for batch in _batches(frames, batch_size):
            pixels = processor(batch, return_tensors="pt", **CHECKED_SIZES)["pixel_values"]  # (b, C, S, S)
            output = model(pixel_values=pixels.to(parameter.device, parameter.dtype))
            probabilities.append(output.lesion_probability.float().cpu().numpy())  # (b,)
            if with_masks:
                sizes = [to_grey_float(frame).shape for frame in batch]
                masks += [mask.numpy().astype(bool) for mask in processor.post_process_semantic_segmentation(
                    output, target_sizes=sizes, threshold=model.config.mask_threshold)]
            if progress is not None:
                progress(len(batch))
    return np.concatenate(probabilities).astype(np.float64), masks  # (T,), T x (H, W)


def lesion_masks(model: Any, processor: Any, frames: Sequence[Any]) -> list[np.ndarray]:
    """Boolean lesion mask `(H, W)` of each frame at the frame's own size (`frame_lesions`)."""
    return frame_lesions(model, processor, frames)[1]


def outline(mask: np.ndarray, width: int = OUTLINE_WIDTH) -> np.ndarray:
    """The boundary band `(H, W)` bool of a mask: pixels within `width // 2` of its edge, inside or out."""
    image = PIL.Image.fromarray(mask.astype(np.uint8) * UINT8_MAX, mode="L")
    grown = np.asarray(image.filter(PIL.ImageFilter.MaxFilter(width))) > 0
    shrunk = np.asarray(image.filter(PIL.ImageFilter.MinFilter(width))) > 0
    return grown & ~shrunk


def draw_outline(frame: Any, mask: np.ndarray, colour: tuple[int, int, int] = OUTLINE_COLOUR) -> np.ndarray:
    """`(H, W, 3)` uint8: the grey frame with the mask's outline drawn in `colour` (the frame alone if empty)."""
    grey = to_grey_uint8(frame)
    if grey.shape != mask.shape:
        raise ValueError(f"The mask's shape {mask.shape} differs from the frame's {grey.shape}.")
    rgb = np.repeat(grey[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    rgb[outline(mask)] = colour
    return rgb


__all__ = [
    "NO_LESION_LABEL",
    "check_model_location",
    "draw_outline",
    "frame_lesion_probabilities",
    "frame_lesions",
    "lesion_masks",
    "load_lesion_model",
    "outline",
]
