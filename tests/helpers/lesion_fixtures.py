"""Synthetic lesion data for tests: images with a drawn lesion (a bright disc) and its mask, as a BUS-BRA-like
store with a `mask` column or as frames, and a tiny lesion model trained on them (no real data)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

LESION_LEVEL = 220
BACKGROUND = (40, 110)  # speckle range of the tissue

TINY_LESION_TRAINING = dict(  # `LesionTrainConfig` options of a tiny training run
    init="random", backbone="test_efficientnet", image_size=48, decoder_channels=[16, 8], num_epochs=2,
    batch_size=8, bootstrap_samples=50, crop_margin=2, min_crop_side=8)


def lesion_frame(rng: np.random.Generator, height: int, width: int, with_lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 speckle with (or without) a bright disc, and its (H, W) bool mask."""
    frame = rng.integers(*BACKGROUND, (height, width)).astype(np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    if with_lesion:
        radius = rng.uniform(0.12, 0.2) * min(height, width)
        centre_row = rng.uniform(0.4, 0.6) * height
        centre_column = rng.uniform(0.35, 0.65) * width
        rows, columns = np.mgrid[0:height, 0:width]
        mask = (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2
        frame[mask] = LESION_LEVEL
    return frame, mask


def png_bytes(array: np.ndarray) -> bytes:
    """A grey (uint8) or 1-bit (bool) PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert("1") if array.dtype == bool else image).save(buffer, format="PNG")
    return buffer.getvalue()


def make_masked_store(n_patients: int = 20, images_per_patient: int = 1, size: int = 48, folds: int = 5,
                      seed: int = 0):
    """A tiny BUS-BRA-like store (image, mask, image_id, patient_id, label, fold, split_k): every image shows a
    disc lesion in its middle third, so the bands above and below are lesion-free."""
    import datasets

    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {name: [] for name in ("image", "mask", "image_id", "patient_id", "label", "fold")}
    splits: dict[int, list] = {k: [] for k in range(1, folds + 1)}
    for patient in range(n_patients):
        test_fold = patient % folds + 1
        for image in range(images_per_patient):
            frame, mask = lesion_frame(rng, size, size + 16, with_lesion=True)
            columns["image"].append({"bytes": png_bytes(frame), "path": None})
            columns["mask"].append({"bytes": png_bytes(mask), "path": None})
            columns["image_id"].append(f"bus_{patient:04d}-{image}")
            columns["patient_id"].append(f"p{patient}")
            columns["label"].append(patient % 2)
            columns["fold"].append(test_fold)
            for k in splits:
                splits[k].append("test" if k == test_fold else "train")
    features = {"image": datasets.Image(), "mask": datasets.Image(), "image_id": datasets.Value("string"),
                "patient_id": datasets.Value("string"), "label": datasets.ClassLabel(names=["benign", "malignant"]),
                "fold": datasets.Value("int32")}
    for k, values in splits.items():
        columns[f"split_{k}"] = values
        features[f"split_{k}"] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def make_bus_bra_folder(root: Path, n_patients: int = 6, size: int = 48) -> Path:
    """A folder in BUS-BRA's layout: bus_data.csv, 5-fold-cv.csv, Images/bus_NNNN-l.png, Masks/mask_NNNN-l.png."""
    from PIL import Image

    rng = np.random.default_rng(1)
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir()
    meta, folds = ["ID,Case,Pathology"], ["ID,Pathology,kFold,valid_1,valid_2"]
    for patient in range(1, n_patients + 1):
        image_id = f"bus_{patient:04d}-l"
        pathology = ("benign", "malignant")[patient % 2]
        frame, mask = lesion_frame(rng, size + 12, size, with_lesion=True)
        Image.fromarray(frame).save(root / "Images" / f"{image_id}.png")
        Image.fromarray(mask).convert("1").save(root / "Masks" / f"mask_{patient:04d}-l.png")
        meta.append(f"{image_id},{patient},{pathology}")
        folds.append(f"{image_id},{pathology},{patient % 2 + 1},{'NaN' if patient % 2 == 0 else 1},"
                     f"{'NaN' if patient % 2 else 1}")
    (root / "bus_data.csv").write_text("\n".join(meta) + "\n")
    (root / "5-fold-cv.csv").write_text("\n".join(folds) + "\n")
    return root


def add_square_masks(store, box: tuple[int, int, int, int] = (10, 10, 30, 30)):
    """`store` with a `mask` column: the `(top, left, bottom, right)` box of every image (where
    `tests.test_training.make_labeled_store` draws its bright square)."""
    import datasets

    masks = []
    for image in store["image"]:
        mask = np.zeros((image.height, image.width), dtype=bool)
        mask[box[0]:box[2], box[1]:box[3]] = True
        masks.append({"bytes": png_bytes(mask), "path": None})
    return store.add_column("mask", masks, feature=datasets.Image())


def train_tiny_lesion_model(folder: Path, size: int = 32, steps: int = 80, seed: int = 0) -> Path:
    """A tiny segmenter (timm `test_efficientnet`) trained for a few seeded CPU steps on synthetic frames with and
    without a disc lesion, saved with its processor; its lesion threshold halves the gap between the two kinds."""
    import torch

    from usvcl_hf import LesionConfig, LesionSegmentationModel, UsvclImageProcessor
    from usvcl_hf.image_processing_usvcl import resize_to_square

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = LesionConfig(backbone="test_efficientnet", image_size=size, decoder_channels=[16, 8])
    model = LesionSegmentationModel(config)
    processor = UsvclImageProcessor(image_size=size)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        pairs = [lesion_frame(rng, 48, 64, with_lesion=index % 2 == 0) for index in range(16)]
        pixels = processor([frame for frame, _ in pairs], return_tensors="pt")["pixel_values"]
        squares = np.stack([resize_to_square(mask.astype(np.float32), size) for _, mask in pairs])  # (16, S, S)
        targets = torch.from_numpy(squares >= 0.5)[:, None].float()  # (16, S, S) -> (16, 1, S, S)
        loss = model(pixel_values=pixels, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    pairs = [lesion_frame(rng, 48, 64, with_lesion=index % 2 == 0) for index in range(32)]
    with torch.no_grad():
        presence = model(processor([frame for frame, _ in pairs], return_tensors="pt")["pixel_values"])
    scores = presence.lesion_probability.numpy()
    lowest_lesion, highest_clear = scores[::2].min(), scores[1::2].max()
    assert lowest_lesion > highest_clear, f"the tiny lesion model did not learn: {scores}"
    model.config.lesion_threshold = float((lowest_lesion + highest_clear) / 2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
