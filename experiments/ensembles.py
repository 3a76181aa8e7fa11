"""Ensembles of trained runs scored as one model: the members' mean calibrated P(malignant), image by image.

Members are runs of the same images (a fold's inner-validation images, or the test images), for example several
training seeds of one recipe, or a whole-image and a lesion-crop classifier. Inner validation decides between
ensembles (`mean_fold_auc`); the test images are read only to report the chosen one.

A run's calibration can be fitted again from its committed files (`recalibrate`): `prob_uncalibrated` is the softmax
of the raw logits, so `logit(prob_uncalibrated)` is the logit difference z1 - z0 that `evaluation.fit_calibration`
scales; `crossfit_calibration` scores a calibration method on validation images it was not fitted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from training import evaluation
from usvcl_hf.runtime.aggregation import logit

KEY = ["fold", "image_id"]  # an image can sit in the inner validation of several folds
CALIBRATIONS = {"temperature": False, "temperature_and_bias": True}  # method -> fit a bias (fit_calibration)
HALVES_SEED = 0  # the patient halves of crossfit_calibration


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


def calibration_error(rows: pd.DataFrame) -> float:
    """ECE (10 equal-width bins) of `prob_malignant` against `label`."""
    return float(evaluation.binary_metrics(rows["label"], rows["prob_malignant"])["ece"])


def mean_fold_auc(rows: pd.DataFrame) -> float:
    """Mean over folds of the AUC of `prob_malignant` on each fold's rows (the inner-validation criterion)."""
    return float(np.mean([evaluation.auc(fold["label"].to_numpy(), fold["prob_malignant"].to_numpy())
                          for _, fold in rows.groupby("fold")]))


def logit_difference(rows: pd.DataFrame) -> np.ndarray:
    """`(n, 2)` logits `[0, z1 - z0]` recovered from `prob_uncalibrated` (softmax of the raw logits)."""
    difference = logit(rows["prob_uncalibrated"].to_numpy(dtype=float))  # (n,)
    return np.stack([np.zeros(len(rows)), difference], axis=1)  # (n, 2)


def calibrated(rows: pd.DataFrame, calibration: tuple[float, float]) -> np.ndarray:
    """`(n,)` P(malignant) of `rows` under `calibration` (temperature, bias)."""
    return evaluation.positive_probability(logit_difference(rows), *calibration)


def recalibrate(validation: pd.DataFrame, test: pd.DataFrame, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of a run's inner-validation and test predictions with each fold's calibration fitted again by `method`
    (`CALIBRATIONS`) on that fold's validation rows, and its threshold chosen again there (Youden's J), as
    `training.finetune` does for a new run."""
    validation, test = validation.copy(), test.copy()
    for fold, rows in validation.groupby("fold"):
        calibration = evaluation.fit_calibration(logit_difference(rows), rows["label"], CALIBRATIONS[method])
        scores = calibrated(rows, calibration)
        threshold = evaluation.youden_threshold(rows["label"].to_numpy(), scores)
        validation.loc[rows.index, ["prob_malignant", "threshold"]] = np.stack(
            [scores, np.full(len(rows), threshold)], axis=1)  # (n_val, 2)
        on_test = test["fold"] == fold
        test.loc[on_test, "prob_malignant"] = calibrated(test[on_test], calibration)
        test.loc[on_test, "threshold"] = threshold
    return validation, test


def crossfit_calibration(validation: pd.DataFrame, method: str, seed: int = HALVES_SEED) -> dict[str, float]:
    """Mean over folds of the NLL and ECE of `method` on inner-validation images it was not fitted on: each fold's
    validation patients split in two halves (seeded), the calibration fitted on one half scores the other, both
    ways."""
    rng = np.random.default_rng(seed)
    nll, ece = [], []
    for _, rows in validation.groupby("fold"):
        patients = rng.permutation(np.unique(rows["patient_id"].astype(str)))
        first = rows["patient_id"].astype(str).isin(patients[: len(patients) // 2]).to_numpy()
        scores = np.empty(len(rows))
        for fit, score in ((first, ~first), (~first, first)):
            calibration = evaluation.fit_calibration(logit_difference(rows[fit]), rows["label"][fit],
                                                     CALIBRATIONS[method])
            scores[score] = calibrated(rows[score], calibration)
        nll.append(evaluation.binary_nll(rows["label"].to_numpy(), scores))
        ece.append(calibration_error(rows.assign(prob_malignant=scores)))
    return {"nll": float(np.mean(nll)), "ece": float(np.mean(ece))}


__all__ = ["CALIBRATIONS", "KEY", "calibrated", "calibration_error", "crossfit_calibration", "logit_difference",
           "mean_fold_auc", "mean_score", "recalibrate", "sensitivity_specificity"]
