"""The numbers behind the tables, computed once per arm or pair of arms: pooled metrics with patient-bootstrap CIs,
per-fold AUC, means over seeds, seed ensembles and paired differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from experiments.report.runs import Arm, Run
from training import evaluation

COMPARISON_BOOTSTRAP, COMPARISON_SEED = 1000, 0


def aligned_scores(runs_a: list[Run], runs_b: list[Run]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The images both arms scored (all their seeds), and scores `(S_a, n)`, `(S_b, n)` aligned on them."""
    images = set.intersection(*(set(run.predictions["image_id"]) for run in runs_a + runs_b))
    if not images:
        raise ValueError(f"{runs_a[0].folder} and {runs_b[0].folder} scored no image in common")
    base = runs_a[0].predictions[runs_a[0].predictions["image_id"].isin(images)].reset_index(drop=True)

    def scores(runs: list[Run]) -> np.ndarray:
        rows = [run.predictions.set_index("image_id").loc[base["image_id"]] for run in runs]
        for row in rows:
            if not np.array_equal(row["label"].to_numpy(), base["label"].to_numpy()):
                raise ValueError(f"{runs[0].folder}: labels differ from {runs_a[0].folder} on the same images")
        return np.stack([row["prob_malignant"].to_numpy(dtype=float) for row in rows])  # (S, n)

    return base, scores(runs_a), scores(runs_b)


def seed_mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean AUC over the rows of `scores (S, n)`."""
    return float(evaluation.auc_replicates(labels, scores, np.ones((1, len(labels)))).mean())


# ----------------------------------------------------------------------------------------------------- statistics
class Statistics:
    """Per-arm and per-comparison numbers, computed once (several tables share them)."""

    def __init__(self, arms: dict[str, Arm]) -> None:
        self.arms = arms
        self.cache: dict[tuple, Any] = {}

    def memo(self, key: tuple, compute: Any) -> Any:
        """`compute()` once per key."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def pooled(self, name: str, seed_index: int = 0) -> dict[str, dict[str, float]]:
        """Pooled test metrics of one seed with patient-bootstrap CIs (the run's own bootstrap settings)."""
        return self.memo(("pooled", name, seed_index), lambda: self._pooled(name, seed_index))

    def _pooled(self, name: str, seed_index: int) -> dict[str, dict[str, float]]:
        run = self.arms[name].runs[seed_index]
        config, rows = run.results[0]["config"], run.predictions
        return evaluation.metrics_with_ci(
            rows["label"].to_numpy(), rows["prob_malignant"].to_numpy(), rows["prob_uncalibrated"].to_numpy(),
            rows["patient_id"].to_numpy(), rows["threshold"].to_numpy(), n_boot=config["bootstrap_samples"],
            seed=config["seed"], n_bins=config["ece_bins"],
        )

    def fold_auc(self, name: str, seed_index: int = 0) -> dict[int, dict[str, float]]:
        """Test AUC with its CI per fold (bootstrap seeded as `training.finetune` seeds it: seed + fold)."""
        return self.memo(("fold_auc", name, seed_index), lambda: self._fold_auc(name, seed_index))

    def _fold_auc(self, name: str, seed_index: int) -> dict[int, dict[str, float]]:
        run = self.arms[name].runs[seed_index]
        config = run.results[0]["config"]
        values = {}
        for fold, rows in run.predictions.groupby("fold"):
            values[int(fold)] = evaluation.metrics_with_ci(
                rows["label"].to_numpy(), rows["prob_malignant"].to_numpy(), rows["prob_uncalibrated"].to_numpy(),
                rows["patient_id"].to_numpy(), rows["threshold"].to_numpy(), n_boot=config["bootstrap_samples"],
                seed=config["seed"] + int(fold), n_bins=config["ece_bins"])["auc"]
        return values

    def over_seeds(self, name: str) -> dict[str, Any]:
        """Mean pooled AUC over seeds with a CI resampling seeds and patients, and the per-seed spread."""
        return self.memo(("over_seeds", name), lambda: self._over_seeds(name))

    def _over_seeds(self, name: str) -> dict[str, Any]:
        runs = self.arms[name].runs
        base, scores, _ = aligned_scores(runs, runs)
        return evaluation.mean_auc_ci(base["label"].to_numpy(), scores, base["patient_id"].to_numpy(),
                                      COMPARISON_BOOTSTRAP, COMPARISON_SEED)

    def seed_ensemble(self, name: str) -> dict[str, Any]:
        """The seeds' mean score as one model: its pooled AUC with a patient-bootstrap CI, and its paired difference
        to a single seed (seeds resampled): what averaging the seeds' fold models adds."""
        return self.memo(("seed_ensemble", name), lambda: self._seed_ensemble(name))

    def _seed_ensemble(self, name: str) -> dict[str, Any]:
        runs = self.arms[name].runs
        base, scores, _ = aligned_scores(runs, runs)
        labels, patients = base["label"].to_numpy(), base["patient_id"].to_numpy()
        ensemble = scores.mean(axis=0, keepdims=True)  # (S, n) -> (1, n)
        alone = evaluation.mean_auc_ci(labels, ensemble, patients, COMPARISON_BOOTSTRAP, COMPARISON_SEED)
        gain = evaluation.paired_auc_difference(labels, ensemble, scores, patients, COMPARISON_BOOTSTRAP,
                                                COMPARISON_SEED)
        return {"auc": alone, "gain": gain}

    def paired(self, name: str, reference: str) -> dict[str, Any]:
        """AUC(arm) - AUC(reference) on the images both scored: paired patient bootstrap, seeds resampled."""
        return self.memo(("paired", name, reference), lambda: self._paired(name, reference))

    def _paired(self, name: str, reference: str) -> dict[str, Any]:
        base, scores_a, scores_b = aligned_scores(self.arms[name].runs, self.arms[reference].runs)
        result = evaluation.paired_auc_difference(base["label"].to_numpy(), scores_a, scores_b,
                                                  base["patient_id"].to_numpy(), COMPARISON_BOOTSTRAP,
                                                  COMPARISON_SEED)
        folds, labels = base["fold"].to_numpy(), base["label"].to_numpy()
        ahead = [seed_mean_auc(labels[folds == k], scores_a[:, folds == k])
                 > seed_mean_auc(labels[folds == k], scores_b[:, folds == k]) for k in np.unique(folds)]
        return {**result, "n_images": len(base), "folds_ahead": int(sum(ahead)), "n_folds": len(ahead)}
