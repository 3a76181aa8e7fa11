"""Lesion crops: the bounding box of a lesion mask and the part of a frame around it that a lesion-crop classifier
(`config.lesion_crop_margin` set) sees, for training (`training.finetune --lesion-crop`) and inference alike.

A box is `(x0, y0, x1, y1)` in pixels of the frame, ends exclusive; `None` = no lesion found (the crop is then the
whole frame). The crop adds `margin` times the box's width (height) on the left and right (top and bottom), clipped
to the frame: the lesion's border and the tissue around it (posterior shadowing) stay in view. A Hub file (numpy
only): the two-view pipeline (`pipeline_usvcl.py`) imports it.

    from usvcl_hf.lesion_crop import lesion_crops
    crops, boxes = lesion_crops(masks, frames, margin=0.2)  # masks from usvcl_hf.runtime.lesion.frame_lesions
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Box = tuple[int, int, int, int]
WHOLE_VIEW, CROP_VIEW = "whole image", "lesion crop"  # the two views of a two-view prediction


def mask_box(mask: np.ndarray) -> Box | None:
    """`(x0, y0, x1, y1)` bounding box of the True pixels of an `(H, W)` mask; None when it has none."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def expand_box(box: Box, margin: float, height: int, width: int) -> Box:
    """`box` grown by `margin` x its width / height on each side, clipped to an `(height, width)` image."""
    x0, y0, x1, y1 = box
    grow_x, grow_y = math.ceil(margin * (x1 - x0)), math.ceil(margin * (y1 - y0))
    return max(0, x0 - grow_x), max(0, y0 - grow_y), min(width, x1 + grow_x), min(height, y1 + grow_y)


def crop_to_box(image: np.ndarray, box: Box | None, margin: float) -> np.ndarray:
    """The `(h, w)` part of an `(H, W)` image around `box` with `margin` (the whole image when `box` is None)."""
    if box is None:
        return image
    x0, y0, x1, y1 = expand_box(box, margin, *image.shape[:2])
    return image[y0:y1, x0:x1]


def two_view_threshold(model: Any, crop_model: Any) -> float:
    """Decision threshold on the mean of the two views' calibrated probabilities: the mean of the whole-image and
    the lesion-crop classifiers' thresholds (`predict_clip`, the demo and the two-view pipeline alike)."""
    return (float(model.config.decision_threshold) + float(crop_model.config.decision_threshold)) / 2


def lesion_crops(masks: Sequence[np.ndarray], frames: Sequence[np.ndarray],
                 margin: float) -> tuple[list[np.ndarray], list[Box | None]]:
    """Each frame cut around its mask's box with `margin` (the whole frame where the mask is empty), and the boxes.
    Raises `ValueError` when a mask's shape differs from its frame's."""
    crops, boxes = [], []
    for mask, frame in zip(masks, frames, strict=True):
        if mask.shape != frame.shape[:2]:
            raise ValueError(f"A lesion mask of shape {mask.shape} does not fit its frame of shape {frame.shape[:2]}.")
        box = mask_box(mask)
        crops.append(crop_to_box(frame, box, margin))
        boxes.append(box)
    return crops, boxes


__all__ = [
    "CROP_VIEW", "WHOLE_VIEW", "Box", "crop_to_box", "expand_box", "lesion_crops", "mask_box", "two_view_threshold",
]
