"""How far to trust a site calibration, estimated on the site's own images without scoring any image with a
calibration fitted on it: patient-grouped K-fold cross-validation of the fitting, against the model's own
calibration, with patient-bootstrap CIs (`training.evaluation.metrics_with_ci`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from training import evaluation
from training.calibrate_site.fitting import Aggregation, Calibration, answer_probabilities, fit_site_calibration
from training.calibrate_site.scoring import ItemScores

REPORTED = ("auc", "sensitivity", "specificity", "accuracy", "ece_after")
NAMES = {"auc": "AUC", "sensitivity": "sensitivity", "specificity": "specificity", "accuracy": "accuracy",
         "ece_after": "ECE"}
DEFAULT_FOLDS = 5
DEFAULT_BOOTSTRAP = 1000


def out_of_fold(scores: Sequence[ItemScores], labels: np.ndarray, groups: np.ndarray, aggregation: Aggregation,
                folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(n,)` P(malignant) and `(n,)` threshold of each answered item, from a calibration fitted on the other
    folds (patients kept together, stratified by label)."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    probabilities, thresholds = np.full(len(scores), np.nan), np.full(len(scores), np.nan)
    for fit_rows, held_rows in splitter.split(np.zeros(len(scores)), labels, groups):
        calibration = fit_site_calibration([scores[row] for row in fit_rows], labels[fit_rows], aggregation)
        probabilities[held_rows] = answer_probabilities([scores[row] for row in held_rows], calibration, aggregation)
        thresholds[held_rows] = calibration.threshold
    return probabilities, thresholds


def crossvalidate(scores: Sequence[ItemScores], labels: np.ndarray, groups: np.ndarray, old: Calibration,
                  aggregation: Aggregation, folds: int = DEFAULT_FOLDS, seed: int = 0,
                  n_boot: int = DEFAULT_BOOTSTRAP) -> dict[str, Any]:
    """`{"model": metrics, "site": metrics, ...}` on the answered items: the model's calibration and threshold, and
    the site calibration cross-validated (each item scored by the calibration of the folds it was not in)."""
    answered = np.flatnonzero([item.answered for item in scores])
    items = [scores[row] for row in answered]
    labels, groups = np.asarray(labels)[answered], np.asarray(groups)[answered]
    old_probabilities = answer_probabilities(items, old, aggregation)
    new_probabilities, new_thresholds = out_of_fold(items, labels, groups, aggregation, folds, seed)

    def metrics(probabilities: np.ndarray, threshold: np.ndarray | float) -> dict[str, dict[str, float]]:
        values = evaluation.metrics_with_ci(labels, probabilities, old_probabilities, groups, threshold,
                                            n_boot=n_boot, seed=seed)
        return {name: values[name] for name in REPORTED}

    return {
        "model": metrics(old_probabilities, old.threshold), "site": metrics(new_probabilities, new_thresholds),
        "old_threshold": old.threshold, "fold_thresholds": sorted(set(new_thresholds.tolist())),
        "images": len(items), "no_lesion": len(scores) - len(items), "folds": folds, "seed": seed,
        "bootstrap": {"samples": n_boot, "unit": "patient (CSV column `patient`, else each file)"},
    }


def report_table(report: dict[str, Any]) -> str:
    """The report as a markdown table (terminal and model card)."""
    folds = report["fold_thresholds"]
    rows = [[f"model's calibration (threshold {report['old_threshold']:.3f})",
             *(evaluation.format_interval(report["model"][name]) for name in REPORTED)],
            [f"site calibration, {report['folds']}-fold cross-validated (thresholds {min(folds):.3f}-"
             f"{max(folds):.3f})", *(evaluation.format_interval(report["site"][name]) for name in REPORTED)]]
    return evaluation.markdown_table(["calibration", *(NAMES[name] for name in REPORTED)], rows)
