"""BUS-BRA lesion masks: where each image's mask file is, reading it at an image's size, and the store's `mask`
column (1-bit PNG at the stored image's size, written by `training.prepare_data images --masks DIR`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from tqdm.auto import tqdm

MASK_TEMPLATE = "mask_{suffix}.png"
IMAGE_PREFIX = "bus_"


def mask_path(masks_dir: Path, image_id: str) -> Path:
    """BUS-BRA's mask file of an image id (`bus_0001-l` -> `mask_0001-l.png`)."""
    return masks_dir / MASK_TEMPLATE.format(suffix=image_id.removeprefix(IMAGE_PREFIX))


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Boolean `(H, W)` lesion mask, resized (nearest) to the image's shape if needed."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no lesion mask for this image")
    return mask_at_shape(PIL.Image.open(path), shape)


def mask_at_shape(mask: PIL.Image.Image | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean `(H, W)` of any mask image (non-zero = lesion), resized (nearest) to `shape` = (H, W) if needed."""
    image = PIL.Image.fromarray(np.asarray(mask).astype(np.uint8) * 255) if isinstance(mask, np.ndarray) else mask
    image = image.convert("L")
    if image.size != (shape[1], shape[0]):
        image = image.resize((shape[1], shape[0]), PIL.Image.NEAREST)
    return np.asarray(image) > 0


def encode_mask_png(mask: np.ndarray) -> bytes:
    """`(H, W)` bool -> 1-bit PNG bytes."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(mask.astype(bool)).convert("1").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def mask_column(masks_dir: Path, image_ids: Sequence[str], images: Sequence[dict[str, Any]]) -> list[dict | None]:
    """The store's `mask` column: each image's mask at the stored image's size as a 1-bit PNG, None when the image
    has no mask file."""
    column: list[dict | None] = []
    for image_id, image in tqdm(list(zip(image_ids, images, strict=True)), desc="masks", unit="mask"):
        path = mask_path(masks_dir, image_id)
        if not path.is_file():
            column.append(None)
            continue
        width, height = PIL.Image.open(io.BytesIO(image["bytes"])).size
        column.append({"bytes": encode_mask_png(load_mask(path, (height, width))), "path": None})
    return column


__all__ = ["encode_mask_png", "load_mask", "mask_at_shape", "mask_column", "mask_path"]
