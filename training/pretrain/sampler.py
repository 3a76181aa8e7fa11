"""Contrastive triplet items from a frame store: anchor, positives of its video, negatives of other patients.

A store is a ``datasets.Dataset`` (or several, concatenated) with at least the columns ``image``, ``video_id``
and ``patient_id`` (see ``training/prepare_data.py``). Item ``i`` uses row ``i`` as anchor:

* ``num_positives`` other frames of the same video (drawn without replacement when the video has enough, else
  with replacement from all of its frames, so a one-frame video gives augmented copies of itself);
* ``num_negatives`` frames from videos of OTHER patients only.

Every random choice uses ``numpy.random.default_rng((seed, epoch, index))``, so an item depends only on
(seed, epoch, index): deterministic, redrawn by ``set_epoch``, independent of the worker count and of any
global RNG state. Images are pre-decoded once per process into one flat uint8 array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from PIL import Image

from training.augment import AugmentConfig, augment_frame
from usvcl_hf.image_processing_usvcl import UINT8_MAX, normalize, to_grey_uint8

DEFAULT_NUM_POSITIVES = 16
DEFAULT_NUM_NEGATIVES = 111
SHARED_NEGATIVES_STREAM = 1  # extra seed word that separates the batch-level negative draw from item draws
REQUIRED_COLUMNS = ("image", "video_id", "patient_id")


@dataclass
class FrameCache:
    """All frames of a store as one flat uint8 array plus per-frame offsets and shapes."""

    pixels: np.ndarray  # (sum of H*W,) uint8
    offsets: np.ndarray  # (R,) int64 start of each frame in ``pixels``
    shapes: np.ndarray  # (R, 2) int64 (H, W) of each frame

    def frame(self, row: int) -> np.ndarray:
        """The (H, W) uint8 frame of ``row`` (a view into the flat array)."""
        height, width = (int(value) for value in self.shapes[row])
        start = int(self.offsets[row])
        return self.pixels[start:start + height * width].reshape(height, width)  # (H*W,) -> (H, W)


def decode_store_images(store: datasets.Dataset) -> FrameCache:
    """Decode every ``image`` of ``store`` to greyscale uint8 and pack them into a :class:`FrameCache`."""
    raw_images = store.cast_column("image", datasets.Image(decode=False))["image"]
    frames = [_decode_image_bytes(raw) for raw in raw_images]
    shapes = np.array([frame.shape for frame in frames], dtype=np.int64).reshape(-1, 2)  # (R, 2)
    sizes = shapes[:, 0] * shapes[:, 1]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    pixels = np.concatenate([frame.ravel() for frame in frames]) if frames else np.zeros(0, np.uint8)
    return FrameCache(pixels=pixels, offsets=offsets, shapes=shapes)


def _decode_image_bytes(raw: dict) -> np.ndarray:
    """A stored image cell (``{"bytes", "path"}``) -> (H, W) uint8 greyscale."""
    import io

    source = io.BytesIO(raw["bytes"]) if raw.get("bytes") else raw["path"]
    with Image.open(source) as image:
        return to_grey_uint8(image)  # (H, W) uint8, the one grey conversion of every door


def _as_store(stores: datasets.Dataset | Sequence[datasets.Dataset]) -> tuple[datasets.Dataset, np.ndarray]:
    """One dataset with the required columns (several stores concatenated) and each row's store number."""
    if isinstance(stores, datasets.Dataset):
        stores = [stores]
    parts = []
    for store in stores:
        missing = [column for column in REQUIRED_COLUMNS if column not in store.column_names]
        if missing:
            raise ValueError(f"store lacks columns {missing}; has {store.column_names}")
        part = store.select_columns(list(REQUIRED_COLUMNS))
        parts.append(part.cast_column("image", datasets.Image(decode=True)))
    store_numbers = np.concatenate([np.full(len(part), number) for number, part in enumerate(parts)])  # (R,)
    return (parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)), store_numbers


class TripletDataset(torch.utils.data.Dataset):
    """Items of ``(1 + P + N, C, H, W)`` (or ``(1 + P, C, H, W)`` with shared negatives), normalised floats."""

    def __init__(
        self,
        stores: datasets.Dataset | Sequence[datasets.Dataset],
        *,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int = 1,
        num_positives: int = DEFAULT_NUM_POSITIVES,
        num_negatives: int = DEFAULT_NUM_NEGATIVES,
        seed: int = 0,
        augment: bool = True,
        augment_config: AugmentConfig | None = None,
        shared_negatives: bool = False,
    ) -> None:
        self.store, self.store_numbers = _as_store(stores)
        self.image_size = image_size
        self.in_chans = in_chans
        self.mean = _per_channel(mean, in_chans, "mean")
        self.std = _per_channel(std, in_chans, "std")
        self.num_positives = num_positives
        self.num_negatives = num_negatives
        self.seed = seed
        self.epoch = 0
        self.augment = augment
        self.augment_config = augment_config or AugmentConfig()
        self.shared_negatives = shared_negatives
        self._index_groups()
        self._cache: FrameCache | None = None

    def _index_groups(self) -> None:
        """Integer codes of videos and patients, and rows sorted by patient for O(1) negative draws.

        Ids are qualified by the store number, so patient "1" of a clip store and case "1" of BUS-BRA differ.
        """
        _, self.video_codes = np.unique(self._qualified("video_id"), return_inverse=True)
        _, self.patient_codes = np.unique(self._qualified("patient_id"), return_inverse=True)
        self.rows_by_video = np.argsort(self.video_codes, kind="stable")
        self.video_starts = np.searchsorted(self.video_codes[self.rows_by_video], np.arange(self.video_codes.max() + 1))
        self.video_ends = np.searchsorted(
            self.video_codes[self.rows_by_video], np.arange(self.video_codes.max() + 1), side="right"
        )
        self.rows_by_patient = np.argsort(self.patient_codes, kind="stable")
        sorted_patients = self.patient_codes[self.rows_by_patient]
        patient_range = np.arange(self.patient_codes.max() + 1)
        self.patient_starts = np.searchsorted(sorted_patients, patient_range)
        self.patient_ends = np.searchsorted(sorted_patients, patient_range, side="right")
        if len(patient_range) < 2:
            raise ValueError("a triplet store needs frames of at least two patients (negatives come from others)")

    def _qualified(self, column: str) -> np.ndarray:
        """(R,) ids of ``column`` prefixed with their store number ("0:patient_1")."""
        ids = np.asarray(self.store[column], dtype=str)
        return np.char.add(np.char.add(self.store_numbers.astype(str), ":"), ids)

    def set_epoch(self, epoch: int) -> None:
        """Redraw positives, negatives and augmentations for ``epoch`` (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.store)

    @property
    def cache(self) -> FrameCache:
        """The decoded frames, built on first use in each process."""
        if self._cache is None:
            self._cache = decode_store_images(self.store)
        return self._cache

    def item_rng(self, index: int) -> np.random.Generator:
        """Generator for item ``index`` in the current epoch."""
        return np.random.default_rng((self.seed, self.epoch, index))

    def positive_rows(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """(P,) rows of the anchor's video other than the anchor (with replacement when there are too few)."""
        video = self.video_codes[index]
        video_rows = self.rows_by_video[self.video_starts[video]:self.video_ends[video]]
        others = video_rows[video_rows != index]
        if len(others) >= self.num_positives:
            return rng.choice(others, size=self.num_positives, replace=False)
        return rng.choice(video_rows, size=self.num_positives, replace=True)

    def negative_rows(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """(N,) rows uniformly drawn among the frames of all patients other than the anchor's."""
        patient = self.patient_codes[index]
        start, end = self.patient_starts[patient], self.patient_ends[patient]
        other_count = len(self) - (end - start)
        draws = rng.choice(other_count, size=self.num_negatives, replace=self.num_negatives > other_count)
        positions = np.where(draws < start, draws, draws + (end - start))  # skip the anchor patient's block
        return self.rows_by_patient[positions]

    def render(self, rows: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """(len(rows), C, S, S) normalised views of ``rows``."""
        views = [
            augment_frame(self.cache.frame(int(row)), self.image_size, rng, self.augment_config, augment=self.augment)
            for row in rows
        ]
        stacked = torch.stack(views)[:, None] / UINT8_MAX  # (V, S, S) -> (V, 1, S, S)
        stacked = stacked.expand(-1, self.in_chans, -1, -1)  # (V, 1, S, S) -> (V, C, S, S)
        return normalize(stacked, self.mean, self.std)

    def item_rows(self, index: int) -> np.ndarray:
        """Rows of item ``index``: anchor, positives and (unless negatives are shared) negatives."""
        rng = self.item_rng(index)
        parts = [np.array([index]), self.positive_rows(index, rng)]
        if not self.shared_negatives:
            parts.append(self.negative_rows(index, rng))
        return np.concatenate(parts)

    def __getitem__(self, index: int) -> torch.Tensor | dict:
        rows = self.item_rows(index)
        views = self.render(rows, self.item_rng(index).spawn(1)[0])  # (1+P[+N], C, S, S)
        if self.shared_negatives:
            return {"pixel_values": views, "index": index}
        return views


def _per_channel(values: Sequence[float], in_chans: int, name: str) -> list[float]:
    """`in_chans` per-channel values from a sequence (one value is broadcast)."""
    values = [float(value) for value in values]
    if len(values) == 1:
        values = values * in_chans
    if len(values) != in_chans:
        raise ValueError(f"{name} has {len(values)} values for in_chans={in_chans}")
    return values


def collate_triplets(items: list[torch.Tensor]) -> torch.Tensor:
    """Stack items of (1+P+N, C, H, W) into (B, 1+P+N, C, H, W)."""
    return torch.stack(items)


class SharedNegativesCollator:
    """Builds one pool of ``num_negatives`` negatives for a whole batch of shared-negative items.

    Returns ``pixel_values`` (B, 1+P, C, H, W), ``negative_pixel_values`` (M, C, H, W) and ``negative_mask``
    (B, M), False where the negative comes from the anchor's own patient. The pool is drawn uniformly over all
    rows with a generator seeded by (seed, epoch, batch indices), so it is deterministic per batch. The
    dataset's epoch is read when collating: with ``persistent_workers=True`` call ``set_epoch`` before the
    workers start.
    """

    def __init__(self, dataset: TripletDataset, num_negatives: int = DEFAULT_NUM_NEGATIVES) -> None:
        if not dataset.shared_negatives:
            raise ValueError("SharedNegativesCollator needs a TripletDataset(shared_negatives=True)")
        self.dataset = dataset
        self.num_negatives = num_negatives

    def negative_rows(self, anchor_indices: list[int]) -> np.ndarray:
        """(M,) rows of the shared pool for a batch with these anchors."""
        rng = np.random.default_rng((self.dataset.seed, self.dataset.epoch, SHARED_NEGATIVES_STREAM, *anchor_indices))
        total = len(self.dataset)
        return rng.choice(total, size=self.num_negatives, replace=self.num_negatives > total)

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        anchor_indices = [int(item["index"]) for item in items]
        rows = self.negative_rows(anchor_indices)
        render_rng = np.random.default_rng((self.dataset.seed, self.dataset.epoch, SHARED_NEGATIVES_STREAM + 1,
                                            *anchor_indices))
        patients = self.dataset.patient_codes
        negative_mask = patients[rows][None, :] != patients[anchor_indices][:, None]  # (B, M)
        return {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),  # (B, 1+P, C, H, W)
            "negative_pixel_values": self.dataset.render(rows, render_rng),  # (M, C, H, W)
            "negative_mask": torch.from_numpy(negative_mask),
            "anchor_indices": torch.tensor(anchor_indices, dtype=torch.long),
        }
