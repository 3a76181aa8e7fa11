"""Synthetic predictions.csv rows for the report, pooling and ensemble tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_PATIENTS, IMAGES_PER_PATIENT, FOLDS = 40, 2, 5
SHIFT, SCALE = 1.5, 3.0  # a class-weighted loss's prior shift, and overconfidence


def synthetic_predictions(seed: int, strength: float, folds: tuple[int, ...] = tuple(range(1, FOLDS + 1))
                          ) -> pd.DataFrame:
    """predictions.csv rows of BUS-BRA's shape: patients grouped in folds, scores that rank labels `strength` well."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(N_PATIENTS), IMAGES_PER_PATIENT)
    labels = np.random.default_rng(0).integers(0, 2, len(patients))  # the same labels for every arm and seed
    scores = np.clip(strength * labels + rng.random(len(patients)) * (1 - strength), 0, 1)
    frame = pd.DataFrame({
        "image_id": [f"img{i:03d}" for i in range(len(patients))], "patient_id": patients.astype(str),
        "fold": patients % FOLDS + 1, "label": labels, "prob_malignant": scores,
        "prob_uncalibrated": np.clip(scores * 1.1, 0, 1), "threshold": 0.5,
    })
    return frame[frame["fold"].isin(folds)]


def predictions(seed: int, n_patients: int = 120) -> pd.DataFrame:
    """Rows of two folds whose raw logit difference is `SCALE * (label - 0.5 + noise) + SHIFT` (biased to class 1)."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), 2)
    labels = rng.integers(0, 2, len(patients))
    difference = SCALE * (labels - 0.5 + rng.normal(0, 0.8, len(patients))) + SHIFT
    return pd.DataFrame({"image_id": [f"{seed}_{i}" for i in range(len(patients))], "patient_id": patients.astype(str),
                         "fold": patients % 2 + 1, "label": labels, "prob_malignant": 0.5,
                         "prob_uncalibrated": 1 / (1 + np.exp(-difference)), "threshold": 0.5})
