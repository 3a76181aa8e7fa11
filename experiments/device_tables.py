"""Tables across scanners, from committed predictions, as markdown (for `experiments.report` table kinds):

- `per_device_auc_table(predictions)`: AUC with a patient-bootstrap CI per scanner, for any predictions file with a
  `device` column (`training.finetune` writes one when its store has devices);
- `site_calibration_table(draws)`: balanced accuracy (and sensitivity, specificity) of the model's own calibration
  against a site calibration fitted on the other half of the site's patients, over repeated draws
  (`experiments/cross_device/site_calibration.py`), with a CI that resamples draws and patients.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from training import evaluation

N_BOOT = 1000
SEED = 0


def per_device_auc_table(predictions: pd.DataFrame, score: str = "prob_malignant", n_boot: int = N_BOOT,
                         seed: int = SEED) -> str:
    """Per scanner (`device`) and all together: images, patients, malignant share and AUC of `score` with a 95%
    patient-bootstrap CI. `predictions` needs columns `device`, `label` (0/1), `patient_id` and `score`."""
    rows = []
    groups = [(str(name), part) for name, part in predictions.groupby("device", sort=True)]
    for name, part in [*groups, ("all", predictions)]:
        labels, scores = part["label"].to_numpy(int), part[score].to_numpy(float)
        weights = evaluation.patient_bootstrap_weights(part["patient_id"].astype(str), n_boot, seed)  # (B, n)
        value = evaluation.auc(labels, scores)
        low, high = evaluation.percentile_interval(evaluation.auc_replicates(labels, scores, weights)[0])
        rows.append([name, len(part), part["patient_id"].nunique(), f"{labels.mean():.2f}",
                     evaluation.format_interval({"value": value, "ci_low": low, "ci_high": high})])
    return evaluation.markdown_table(["device", "images", "patients", "malignant share", "AUC (95% CI)"], rows)


def decision_rates(labels: np.ndarray, called: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity and balanced accuracy of 0/1 `called` for `labels (n,)` under `weights (B, n)`."""
    positive, negative = labels == 1, labels == 0
    sensitivity = (weights * (called & positive)).sum(1) / np.maximum((weights * positive).sum(1), 1e-12)
    specificity = (weights * (~called & negative)).sum(1) / np.maximum((weights * negative).sum(1), 1e-12)
    return {"sensitivity": sensitivity, "specificity": specificity,
            "balanced_accuracy": (sensitivity + specificity) / 2}


def draw_rates(draws: pd.DataFrame, weights: Callable[[np.ndarray], np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """`{metric: (D, B)}` rates of each draw's evaluation half, the `prefix` columns' decision
    (`{prefix}_probability >= {prefix}_threshold`), under each draw's patient weights."""
    rates: dict[str, list] = {}
    for _, part in draws.groupby("draw", sort=True):
        called = part[f"prob_{prefix}"].to_numpy(float) >= part[f"threshold_{prefix}"].to_numpy(float)
        rows = weights(part["patient_id"].astype(str).to_numpy())  # (B + 1, n)
        for name, values in decision_rates(part["label"].to_numpy(int), called, rows).items():
            rates.setdefault(name, []).append(values)
    return {name: np.stack(values) for name, values in rates.items()}


def patient_weights(patients: np.ndarray, n_boot: int, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """A function rows' patient ids -> `(B + 1, n)` weights: row 0 ones (the point value), then how often each
    patient is drawn in B resamplings of `patients` (the same resampling for every draw)."""
    unique = np.unique(patients)
    counts = np.stack([np.bincount(rng.integers(0, len(unique), len(unique)), minlength=len(unique))
                       for _ in range(n_boot)])  # (B, P)
    counts = np.vstack([np.ones(len(unique)), counts])  # (B + 1, P)
    index = {patient: position for position, patient in enumerate(unique)}
    return lambda rows: counts[:, [index[patient] for patient in rows]]


def site_calibration_table(draws: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED) -> str:
    """Mean over draws of balanced accuracy, sensitivity and specificity on each draw's evaluation half: the
    model's calibration and threshold (`prob_model`, `threshold_model`) against the site calibration fitted on the
    draw's other half (`prob_site`, `threshold_site`), and their difference; 95% CIs resample draws and patients
    together. `draws` needs columns `draw`, `patient_id`, `label` and those four."""
    rng = np.random.default_rng(seed)
    weights = patient_weights(draws["patient_id"].astype(str).unique(), n_boot, rng)
    model, site = draw_rates(draws, weights, "model"), draw_rates(draws, weights, "site")
    chosen = rng.integers(0, model["balanced_accuracy"].shape[0], size=(n_boot, model["balanced_accuracy"].shape[0]))

    def cell(values: np.ndarray) -> str:  # values (D, B + 1): row 0 of B the point value
        replicates = np.take_along_axis(values[:, 1:].T, chosen, axis=1).mean(1)  # (B,)
        low, high = evaluation.percentile_interval(replicates)
        return evaluation.format_interval({"value": float(values[:, 0].mean()), "ci_low": low, "ci_high": high})

    metrics = ("balanced_accuracy", "sensitivity", "specificity")
    rows = [["model's calibration", *(cell(model[name]) for name in metrics)],
            ["site calibration (other half)", *(cell(site[name]) for name in metrics)],
            ["difference", *(cell(site[name] - model[name]) for name in metrics)]]
    header = f"calibration ({draws['draw'].nunique()} draws, {draws['patient_id'].nunique()} patients)"
    return evaluation.markdown_table([header, "balanced accuracy", "sensitivity", "specificity"], rows)
