"""Tests for training.pretrain.sampler (triplet items, shared negatives) and training.augment (determinism)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training import synthetic
from training.augment import augment_frame
from training.pretrain.sampler import SharedNegativesCollator, TripletDataset, collate_triplets

IMAGE_SIZE = 16
POSITIVES = 3
NEGATIVES = 5


def make_dataset(store=None, **overrides) -> TripletDataset:
    store = store if store is not None else synthetic.make_frame_store({"a": 2, "b": 1, "c": 1}, frames_per_video=3)
    options = {"image_size": IMAGE_SIZE, "mean": [0.5], "std": [0.25], "num_positives": POSITIVES,
               "num_negatives": NEGATIVES, "seed": 7}
    return TripletDataset(store, **(options | overrides))


def test_item_and_batch_shapes() -> None:
    dataset = make_dataset(in_chans=3, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    item = dataset[0]
    assert item.shape == (1 + POSITIVES + NEGATIVES, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert item.dtype == torch.float32
    batch = collate_triplets([dataset[0], dataset[1]])
    assert batch.shape == (2, 1 + POSITIVES + NEGATIVES, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_positives_come_from_anchor_video() -> None:
    dataset = make_dataset()
    for index in range(len(dataset)):
        rows = dataset.item_rows(index)
        positives = rows[1:1 + POSITIVES]
        assert set(dataset.video_codes[positives]) == {dataset.video_codes[index]}


@settings(max_examples=25, deadline=None)
@given(
    videos_per_patient=st.dictionaries(st.sampled_from("pqrstu"), st.integers(1, 3), min_size=2, max_size=5),
    frames_per_video=st.integers(1, 4),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
)
def test_negatives_never_share_the_anchor_patient(videos_per_patient, frames_per_video, seed, epoch) -> None:
    store = synthetic.make_frame_store(videos_per_patient, frames_per_video=frames_per_video, size=8)
    dataset = make_dataset(store, seed=seed)
    dataset.set_epoch(epoch)
    for index in range(len(dataset)):
        rows = dataset.item_rows(index)
        negatives = rows[1 + POSITIVES:]
        assert len(negatives) == NEGATIVES
        assert not np.any(dataset.patient_codes[negatives] == dataset.patient_codes[index])


def test_determinism_and_epoch_change() -> None:
    first, second = make_dataset(), make_dataset()
    torch.manual_seed(123)  # global RNG state must not matter
    assert torch.equal(first[2], second[2])
    first.set_epoch(1)
    assert not torch.equal(first[2], second[2])
    second.set_epoch(1)
    assert torch.equal(first[2], second[2])


def test_shared_negatives_mask() -> None:
    dataset = make_dataset(shared_negatives=True)
    collate = SharedNegativesCollator(dataset, num_negatives=8)
    batch = collate([dataset[0], dataset[4], dataset[8]])
    assert batch["pixel_values"].shape == (3, 1 + POSITIVES, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["negative_pixel_values"].shape == (8, 1, IMAGE_SIZE, IMAGE_SIZE)
    rows = collate.negative_rows([0, 4, 8])
    patients = dataset.patient_codes
    expected = patients[rows][None, :] != patients[[0, 4, 8]][:, None]  # (B, M)
    assert torch.equal(batch["negative_mask"], torch.from_numpy(expected))
    again = collate([dataset[0], dataset[4], dataset[8]])
    assert torch.equal(again["negative_pixel_values"], batch["negative_pixel_values"])


def test_augment_is_seeded() -> None:
    frame = synthetic.synthetic_frames(1)[0]
    first = augment_frame(frame, IMAGE_SIZE, np.random.default_rng(3))
    second = augment_frame(frame, IMAGE_SIZE, np.random.default_rng(3))
    other = augment_frame(frame, IMAGE_SIZE, np.random.default_rng(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert first.shape == (IMAGE_SIZE, IMAGE_SIZE)
    assert float(first.min()) >= 0 and float(first.max()) <= 255


def test_centre_view_without_augment_is_resized_square() -> None:
    frame = np.tile(np.arange(64, dtype=np.uint8), (48, 1))  # (48, 64) horizontal ramp
    view = augment_frame(frame, 48, np.random.default_rng(0), augment=False)
    assert view.shape == (48, 48)
    assert float(view[:, 0].mean()) < float(view[:, -1].mean())


def test_concatenated_stores_keep_patients_apart() -> None:
    clips = synthetic.make_frame_store({"1": 1, "2": 1}, frames_per_video=2, size=8)
    images = synthetic.make_frame_store({"1": 1}, frames_per_video=2, size=8)
    dataset = make_dataset([clips, images])
    assert len(dataset) == 6
    assert len(set(dataset.patient_codes)) == 3  # patient "1" of each store is a different patient
    negatives = dataset.item_rows(0)[1 + POSITIVES:]
    assert set(negatives) <= {2, 3, 4, 5}
