"""The labelled store decoded once into padded grey squares, and the datasets / loaders over its rows."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

import usvcl_hf
from training.augment import SEED_BOUND, AugmentConfig, augment_batch, params_tensor, render_views, sample_view
from training.common import EpochSeededSampler
from training.lesion.boxes import BoxKey
from training.lesion.masks import mask_at_shape
from usvcl_hf.image_processing_usvcl import normalize, resize_to_square, to_grey_float
from usvcl_hf.lesion_crop import Box, crop_to_box, mask_box

SPLIT_PREFIX = "split_"


@dataclasses.dataclass
class LabeledData:
    """The labelled store, decoded once: padded grey squares and per-row metadata."""

    squares: np.ndarray  # (n, S, S) float32 in [0, 1]
    labels: np.ndarray  # (n,) int
    patient_ids: np.ndarray  # (n,) str
    image_ids: np.ndarray  # (n,) str
    split_columns: dict[int, np.ndarray]  # official fold k -> (n,) "train"/"val"/"test"
    class_names: list[str] = dataclasses.field(default_factory=list)  # label k's name (the store's ClassLabel)
    masks: np.ndarray | None = None  # (n, S, S) float32 lesion masks squared like `squares`; NaN = no mask
    fold_squares: dict[int, dict[int, np.ndarray]] = dataclasses.field(default_factory=dict)  # fold -> row -> (S, S)
    devices: np.ndarray | None = None  # (n,) str: each image's scanner (the store's `device` column), if it has one

    def for_fold(self, number: int) -> LabeledData:
        """The data fold `number` trains, validates and tests on: its own squares of the rows it has them for (its
        segmenter's lesion crops of its validation and test images), `squares` elsewhere."""
        own = self.fold_squares.get(number)
        if not own:
            return self
        squares = self.squares.copy()  # (n, S, S)
        rows = np.fromiter(own, dtype=int)
        squares[rows] = np.stack([own[row] for row in rows.tolist()])
        return dataclasses.replace(self, squares=squares, fold_squares={})

    @property
    def id2label(self) -> dict[int, str]:
        """`{k: name}` for the model config, so a saved classifier names its classes as the store does."""
        return dict(enumerate(self.class_names))


class SquareDataset(torch.utils.data.Dataset):
    """Rows of `LabeledData` as normalised `(C, S, S)` tensors; seeded augmentations on the training side only."""

    def __init__(
        self,
        data: LabeledData,
        rows: np.ndarray,
        processor: usvcl_hf.UsvclImageProcessor,
        augment: bool,
        seed: int,
        policy: AugmentConfig | None = None,
    ) -> None:
        self.data = data
        self.rows = np.asarray(rows, dtype=int)
        self.augment = augment
        self.policy = policy or AugmentConfig()
        self.seed = seed
        self.epoch = 0
        self.in_chans = processor.in_chans
        self.mean, self.std = processor.image_mean, processor.image_std

    def set_epoch(self, epoch: int) -> None:
        """Redraw the augmentations for `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> dict[str, Any]:
        """The raw square, its seeded view parameters (augmented side) and label; `pixel_values` renders them."""
        row = int(self.rows[position])
        square = torch.from_numpy(self.data.squares[row])  # (S, S) in [0, 1]
        item = {"squares": square, "labels": torch.tensor(int(self.data.labels[row])), "row": torch.tensor(row)}
        if self.data.masks is not None:
            item["masks"] = torch.from_numpy(self.data.masks[row])  # (S, S)
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, row))
            item["views"] = params_tensor([sample_view(*square.shape, rng, self.policy)])[0]  # (10,)
            item["noise_seed"] = torch.tensor(int(rng.integers(SEED_BOUND)))
        return item

    def pixel_values(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`(B, C, S, S)` normalised model input of a collated batch, augmented in one batched call on the batch's
        device (a GPU renders the views, so data workers only index arrays)."""
        squares = batch["squares"]  # (B, S, S) in [0, 1]
        if self.augment:
            squares = augment_batch(squares, batch["views"], int(batch["noise_seed"][0]))
        channels = squares[:, None].expand(-1, self.in_chans, -1, -1)  # (B, S, S) -> (B, C, S, S)
        return normalize(channels, self.mean, self.std)

    def mask_targets(self, batch: dict[str, torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """`(B, 1, h, w)` lesion share of each cell of a `grid = (h, w)` feature map, the masks cut with the same
        views as `pixel_values` (NaN where the row has no mask)."""
        masks = batch["masks"]  # (B, S, S)
        if self.augment:
            masks = render_views(masks, batch["views"], masks.shape[-1])  # same crop, rotation and flip
        return torch.nn.functional.adaptive_avg_pool2d(masks[:, None].float(), grid)  # (B, S, S) -> (B, 1, h, w)


def label_names(store: datasets.Dataset) -> list[str]:
    """The names of the store's `label` classes: its `ClassLabel` names, else the label values as text."""
    feature = store.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return [str(value) for value in range(int(max(store["label"])) + 1)]


def square_mask(mask: Any, shape: tuple[int, int], image_size: int, resize_mode: str) -> np.ndarray:
    """`(S, S)` float32 lesion mask squared exactly like its `(H, W)` image (NaN when the row has no mask)."""
    if mask is None:
        return np.full((image_size, image_size), np.nan, dtype=np.float32)
    return resize_to_square(mask_at_shape(mask, shape).astype(np.float32), image_size, resize_mode)


@dataclasses.dataclass(frozen=True)
class LesionCrops:
    """Classify lesion crops (`training.lesion.boxes`): each image's mask box grown by `margin`; with `eval_boxes`
    ((fold, split, image id) -> box of that fold's segmenter), a fold's validation and test images cut by those."""

    margin: float
    eval_boxes: dict[BoxKey, Box | None] | None = None

    def boxes_of(self) -> dict[str, list[tuple[int, Box | None]]]:
        """Image id -> [(fold, segmenter box)] of `eval_boxes`."""
        by_image: dict[str, list[tuple[int, Box | None]]] = {}
        for (fold, _, image_id), box in (self.eval_boxes or {}).items():
            by_image.setdefault(image_id, []).append((fold, box))
        return by_image


def load_labeled_data(store_path: str, image_size: int, resize_mode: str, with_masks: bool = False,
                      crops: LesionCrops | None = None) -> LabeledData:
    """Decode the store's images to `(S, S)` squares the way `UsvclImageProcessor` does (no normalisation); with
    `with_masks`, also its `mask` column (`training.prepare_data images --masks DIR`) squared the same way; with
    `crops`, each image cut to its mask's lesion box, and `fold_squares` cut by the folds' segmenter boxes."""
    store = datasets.load_from_disk(store_path)
    needs_mask = with_masks or crops is not None
    for column in ("image", "label", "patient_id", *(("mask",) if needs_mask else ())):
        if column not in store.column_names:
            raise ValueError(f"{store_path}: a labelled store needs column {column!r}; has {store.column_names}.")
    image_ids = store["image_id"] if "image_id" in store.column_names else [str(i) for i in range(len(store))]
    segmenter_boxes = crops.boxes_of() if crops is not None else {}
    squares, masks, fold_squares = [], [], {}
    for row, (image, mask, image_id) in enumerate(zip(
            store["image"], store["mask"] if needs_mask else itertools.repeat(None), image_ids)):
        grey = to_grey_float(image)  # (H, W)
        for fold, box in segmenter_boxes.get(image_id, []):
            fold_squares.setdefault(fold, {})[row] = resize_to_square(crop_to_box(grey, box, crops.margin),
                                                                      image_size, resize_mode)
        if crops is not None:
            grey = crop_to_box(grey, mask_box(mask_at_shape(mask, grey.shape)) if mask is not None else None,
                               crops.margin)
        squares.append(resize_to_square(grey, image_size, resize_mode))
        if with_masks:
            masks.append(square_mask(mask, grey.shape, image_size, resize_mode))
    split_columns = {
        int(name.removeprefix(SPLIT_PREFIX)): np.asarray(store[name]).astype(str)
        for name in store.column_names
        if name.startswith(SPLIT_PREFIX) and name.removeprefix(SPLIT_PREFIX).isdigit()
    }
    return LabeledData(
        squares=np.stack(squares).astype(np.float32),  # (n, S, S)
        labels=np.asarray(store["label"], dtype=int),
        patient_ids=np.asarray(store["patient_id"]).astype(str),
        image_ids=np.asarray(image_ids).astype(str),
        split_columns=dict(sorted(split_columns.items())),
        class_names=label_names(store),
        masks=np.stack(masks) if with_masks else None,  # (n, S, S)
        fold_squares=fold_squares,
        devices=np.asarray(store["device"]).astype(str) if "device" in store.column_names else None,
    )


def make_loader(dataset: SquareDataset, batch_size: int, shuffle_seed: int | None, num_workers: int) -> DataLoader:
    """Loader; shuffled with an epoch-seeded order when `shuffle_seed` is given (training). A training epoch whose
    last batch would hold ONE image drops it: BatchNorm cannot train on a batch of one (every other size is kept)."""
    sampler = EpochSeededSampler(len(dataset), shuffle_seed) if shuffle_seed is not None else None
    lone_last = shuffle_seed is not None and len(dataset) > batch_size and len(dataset) % batch_size == 1
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=lone_last)

