"""Examples for the lesion segmenter: BUS-BRA images with their masks, and lesion-free crops with empty targets.

A lesion-free crop is a window of the image's own aspect ratio inside the largest band of the image (above, below,
left or right of the lesion's bounding box grown by `margin` pixels) that keeps at least `min_side` pixels per side;
so it never touches the mask. Evaluation uses the largest such window, centred in its band; training draws a
smaller window (60-100 % of the side) at a random place in that band, anew each epoch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset

from training.augment import AugmentConfig, augment_batch, centre_view, params_tensor, render_views, sample_view
from training.finetune import SPLIT_PREFIX
from training.lesion.masks import mask_at_shape
from usvcl_hf.image_processing_usvcl import normalize, resize_to_square, to_grey_float

Box = tuple[int, int, int, int]  # (top, left, bottom, right)
LESION, CROP = 0, 1  # item kinds: the whole image with its mask, a lesion-free crop with an empty mask
KIND_NAMES = ("lesion", "crop")
TRAIN_CROP_SCALE = (0.6, 1.0)  # side of a training crop relative to the largest free window
MASK_CUT = 0.5  # a resized mask pixel is lesion when at least half of it was
PAIR_AUGMENT = AugmentConfig(crop_area=(0.7, 1.0))  # gentler zoom than pretraining: keep most of the lesion


@dataclasses.dataclass
class MaskedData:
    """A store with masks, decoded once: grey images, boolean masks and per-row metadata (rows without a mask are
    dropped)."""

    images: list[np.ndarray]  # (H_i, W_i) float32 in [0, 1]
    masks: list[np.ndarray]  # (H_i, W_i) bool
    labels: np.ndarray  # (n,) benign/malignant, used only to stratify the inner validation split
    patient_ids: np.ndarray  # (n,) str
    image_ids: np.ndarray  # (n,) str
    split_columns: dict[int, np.ndarray]  # official fold k -> (n,) "train"/"val"/"test"


def load_masked_data(store_path: str) -> MaskedData:
    """Read a labelled store with a `mask` column (`training.prepare_data images --masks`); masks are brought to
    their image's size (nearest) when a packed store shrank the images only."""
    store = datasets.load_from_disk(store_path)
    for column in ("image", "mask", "patient_id", "image_id"):
        if column not in store.column_names:
            raise ValueError(f"{store_path}: the lesion model needs column {column!r} (build the store with "
                             f"`training.prepare_data images --masks DIR`); the store has {store.column_names}.")
    keep = [index for index, mask in enumerate(store["mask"]) if mask is not None]
    store = store.select(keep)
    images = [to_grey_float(image) for image in store["image"]]
    masks = [mask_at_shape(mask, image.shape) for mask, image in zip(store["mask"], images, strict=True)]
    split_columns = {
        int(name.removeprefix(SPLIT_PREFIX)): np.asarray(store[name]).astype(str)
        for name in store.column_names
        if name.startswith(SPLIT_PREFIX) and name.removeprefix(SPLIT_PREFIX).isdigit()
    }
    labels = store["label"] if "label" in store.column_names else [0] * len(store)
    return MaskedData(images=images, masks=masks, labels=np.asarray(labels, dtype=int),
                      patient_ids=np.asarray(store["patient_id"]).astype(str),
                      image_ids=np.asarray(store["image_id"]).astype(str),
                      split_columns=dict(sorted(split_columns.items())))


def free_bands(mask: np.ndarray, margin: int) -> list[Box]:
    """The four bands of the image outside the mask's bounding box grown by `margin` (the whole image if empty)."""
    height, width = mask.shape
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return [(0, 0, height, width)]
    top, bottom = max(0, rows[0] - margin), min(height, rows[-1] + 1 + margin)
    left, right = max(0, columns[0] - margin), min(width, columns[-1] + 1 + margin)
    return [(0, 0, top, width), (bottom, 0, height, width), (0, 0, height, left), (0, right, height, width)]


def window_in_band(band: Box, aspect: float) -> tuple[int, int]:
    """(height, width) of the largest window of `aspect` = width / height inside `band`."""
    band_height, band_width = band[2] - band[0], band[3] - band[1]
    height = min(band_height, band_width / aspect)
    return int(height), int(min(band_width, height * aspect))


def free_window(mask: np.ndarray, margin: int, min_side: int, rng: np.random.Generator | None = None) -> Box | None:
    """A lesion-free window `(top, left, bottom, right)` of the image's aspect, or None when no band holds one of
    `min_side`. Without `rng`: the largest window, centred in its band; with `rng`: 60-100 % of that side at a random
    place in the band."""
    aspect = mask.shape[1] / mask.shape[0]
    sized = [(band, *window_in_band(band, aspect)) for band in free_bands(mask, margin)]
    sized = [item for item in sized if min(item[1], item[2]) >= min_side]
    if not sized:
        return None
    band, height, width = max(sized, key=lambda item: item[1] * item[2])
    if rng is None:
        top = band[0] + (band[2] - band[0] - height) // 2
        left = band[1] + (band[3] - band[1] - width) // 2
        return top, left, top + height, left + width
    scale = max(rng.uniform(*TRAIN_CROP_SCALE), min_side / min(height, width))
    height, width = max(min_side, int(height * scale)), max(min_side, int(width * scale))
    top = band[0] + int(rng.integers(0, band[2] - band[0] - height + 1))
    left = band[1] + int(rng.integers(0, band[3] - band[1] - width + 1))
    return top, left, top + height, left + width


def example_items(data: MaskedData, rows: np.ndarray, margin: int, min_side: int) -> np.ndarray:
    """`(m, 2)` items `(row, kind)`: every row as LESION, and as CROP when it has a lesion-free window."""
    items = [(int(row), LESION) for row in rows]
    items += [(int(row), CROP) for row in rows if free_window(data.masks[row], margin, min_side) is not None]
    return np.asarray(items, dtype=np.int64).reshape(-1, 2)


def augment_on_device(squares: torch.Tensor, targets: torch.Tensor, views: torch.Tensor,
                      noise_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch's random views, rendered on its device: `squares (B, S, S)` in [0, 1], `targets (B, 1, S, S)`
    and `views (B, 10)` (`training.augment.params_tensor`). The same crop, rotation and flip for image and mask
    (`render_views`), gain, contrast, gamma and speckle for the image only (`augment_batch`)."""
    size = squares.shape[-1]
    images = augment_batch(squares, views, noise_seed)  # (B, S, S)
    masks = render_views(targets[:, 0].float(), views, size) >= MASK_CUT  # (B, 1, S, S) -> (B, S, S)
    return images, masks[:, None].to(targets.dtype)  # (B, S, S) -> (B, 1, S, S)


def normalise(squares: torch.Tensor, processor: Any) -> torch.Tensor:
    """`(B, S, S)` in [0, 1] -> `(B, C, S, S)` pixel values, as `processor` normalises them."""
    channels = squares[:, None].expand(-1, processor.in_chans, -1, -1)  # (B, S, S) -> (B, C, S, S)
    return normalize(channels, processor.image_mean, processor.image_std)


class LesionDataset(Dataset):
    """Items `(row, kind)` as `(S, S)` squares in [0, 1] and `(1, S, S)` targets, resized like the processor, with
    the `(10,)` parameters of a random view when augmenting (rendered later on the device, `augment_on_device`)."""

    def __init__(self, data: MaskedData, items: np.ndarray, processor: Any, augment: bool, seed: int,
                 margin: int, min_side: int) -> None:
        self.data, self.items, self.augment, self.seed = data, items, augment, seed
        self.margin, self.min_side, self.epoch = margin, min_side, 0
        self.size, self.mode = processor.image_size, processor.resize_mode

    def set_epoch(self, epoch: int) -> None:
        """Redraw augmentations and training crops for `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def example(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The item's image and mask at their stored size (a crop has an all-false mask)."""
        row, kind = (int(value) for value in self.items[position])
        image, mask = self.data.images[row], self.data.masks[row]
        if kind == LESION:
            return image, mask
        rng = np.random.default_rng((self.seed, self.epoch, row)) if self.augment else None
        top, left, bottom, right = free_window(mask, self.margin, self.min_side, rng)
        return image[top:bottom, left:right], np.zeros((bottom - top, right - left), dtype=bool)

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        image, mask = self.example(position)
        square = resize_to_square(image, self.size, self.mode)  # (S, S)
        target = resize_to_square(mask.astype(np.float32), self.size, self.mode) >= MASK_CUT  # (S, S)
        view = centre_view(self.size, self.size)
        if self.augment:
            view = sample_view(self.size, self.size, np.random.default_rng((self.seed, self.epoch, position)),
                               PAIR_AUGMENT)
        return {"squares": torch.from_numpy(square),
                "labels": torch.from_numpy(target.astype(np.float32))[None],  # (S, S) -> (1, S, S)
                "views": params_tensor([view])[0],  # (10,)
                "position": torch.tensor(position)}


__all__ = ["CROP", "KIND_NAMES", "LESION", "LesionDataset", "MaskedData", "augment_on_device", "example_items",
           "free_window", "load_masked_data", "normalise"]
