"""A tiny BUS-BRA-like labelled image store and the tiny fine-tuning config, for the training tests."""

from __future__ import annotations

import io

import numpy as np

from tests.helpers.paths import REPO_ROOT

FINETUNE_CONFIG = REPO_ROOT / "training/configs/test_tiny_finetune.yaml"


def labeled_png(rng: np.random.Generator, label: int, size: int) -> dict:
    """One grey PNG as a store's image cell: noise, and a bright square when `label` is 1 (malignant)."""
    from PIL import Image

    pixels = rng.integers(0, 120, (size, size + 6)).astype(np.uint8)
    pixels[10:30, 10:30] += 120 * label
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def make_labeled_store(n_patients: int = 16, images_per_patient: int = 2, size: int = 40, folds: int = 2):
    """A tiny BUS-BRA-like image store: label (ClassLabel), fold, split_k; malignant images carry a bright square."""
    import datasets

    rng = np.random.default_rng(0)
    columns: dict[str, list] = {name: [] for name in ("image", "image_id", "patient_id", "label", "fold")}
    splits: dict[int, list] = {k: [] for k in range(1, folds + 1)}
    for patient in range(n_patients):
        label, test_fold = patient % 2, (patient // 2) % folds + 1
        for image in range(images_per_patient):
            columns["image"].append(labeled_png(rng, label, size))
            columns["image_id"].append(f"img_{patient}_{image}")
            columns["patient_id"].append(f"p{patient}")
            columns["label"].append(label)
            columns["fold"].append(test_fold)
            for k in splits:
                splits[k].append("test" if k == test_fold else ("val" if (patient // 2) % 4 < 2 else "train"))
    features = {
        "image": datasets.Image(), "image_id": datasets.Value("string"), "patient_id": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["benign", "malignant"]), "fold": datasets.Value("int32"),
    }
    for k, values in splits.items():
        columns[f"split_{k}"] = values
        features[f"split_{k}"] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))
