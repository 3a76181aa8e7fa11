"""Ensembles of trained runs scored as one model: the members' mean calibrated P(malignant), image by image.

Members are runs of the same images (a fold's inner-validation images, or the test images), for example several
training seeds of one recipe, or a whole-image and a lesion-crop classifier. Inner validation decides between
ensembles (`mean_fold_auc`); the test images are read only to report the chosen one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from training import evaluation

KEY = ["fold", "image_id"]  # an image can sit in the inner validation of several folds


def mean_score(members: Sequence[pd.DataFrame], names: Sequence[Path | str]) -> pd.DataFrame:
    """One prediction table (`fold`, `image_id`, `patient_id`, `label`, `prob_malignant`, `threshold`), sorted by
    (fold, image id), whose `prob_malignant` and `threshold` are the members' means (the decision rule the two-view
    demo uses: `usvcl_hf.lesion_crop.two_view_threshold`). Raises `ValueError` naming the member whose images or
    labels differ from the first's."""
    base = members[0].sort_values(KEY, kind="stable").reset_index(drop=True)[[*KEY, "patient_id", "label"]]
    scores = []
    for rows, name in zip(members, names):
        rows = rows.sort_values(KEY, kind="stable").reset_index(drop=True)
        if not rows[KEY].equals(base[KEY]):
            raise ValueError(f"{name}: scores other images than {names[0]} (an ensemble needs the same folds and "
                             "inner splits: --split-seed)")
        if not np.array_equal(rows["label"].to_numpy(), base["label"].to_numpy()):
            raise ValueError(f"{name}: labels differ from {names[0]} on the same images")
        scores.append(rows[["prob_malignant", "threshold"]].to_numpy(dtype=float))  # (n, 2)
    mean = np.mean(scores, axis=0)  # (M, n, 2) -> (n, 2)
    return base.assign(prob_malignant=mean[:, 0], threshold=mean[:, 1])


def sensitivity_specificity(rows: pd.DataFrame) -> tuple[float, float]:
    """Share of malignant rows with `prob_malignant >= threshold`, and of benign rows below it."""
    called = rows["prob_malignant"].to_numpy() >= rows["threshold"].to_numpy()
    malignant = rows["label"].to_numpy() == 1
    return float(called[malignant].mean()), float((~called[~malignant]).mean())


def mean_fold_auc(rows: pd.DataFrame) -> float:
    """Mean over folds of the AUC of `prob_malignant` on each fold's rows (the inner-validation criterion)."""
    return float(np.mean([evaluation.auc(fold["label"].to_numpy(), fold["prob_malignant"].to_numpy())
                          for _, fold in rows.groupby("fold")]))


__all__ = ["KEY", "mean_fold_auc", "mean_score", "sensitivity_specificity"]
