"""The label-efficiency table: AUC per number of labeled training images, over draws, against a reference arm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.report.runs import EXPERIMENTS_DIR, read_predictions
from experiments.report.statistics import COMPARISON_BOOTSTRAP, COMPARISON_SEED
from experiments.report.text import interval, markdown, mean_sd, verdict
from experiments.run_folders import run_parts
from training import evaluation


def label_draws(folder: Path) -> dict[int, pd.DataFrame]:
    """label_efficiency_predictions.csv of a run, per training-set size; a folder without one pools its part*/
    folders (test folds split over processes: the draws are seeded by size and draw, not by the folds run)."""
    name = "label_efficiency_predictions.csv"
    rows = pd.concat([read_predictions(part / name) for part in run_parts(folder, (name,))], ignore_index=True)
    if rows.duplicated(["num_labels", "draw", "image_id"]).any():
        raise ValueError(f"{folder}: an image is scored twice in one draw (a fold in two parts?)")
    return {int(size): part for size, part in rows.groupby("num_labels")}


def draw_scores(rows: pd.DataFrame, images: pd.Series) -> np.ndarray:
    """`(D, n)` calibrated scores of each draw on `images`, in that order."""
    return np.stack([draw.set_index("image_id").loc[images, "prob_malignant"].to_numpy(dtype=float)
                     for _, draw in rows.groupby("draw")])


def label_efficiency_table(spec: dict[str, Any], root: Path) -> str:
    """Per arm and size: mean ± sd over draws, a CI resampling draws and patients, the paired difference to the
    reference arm at the same size (patients shared, draws resampled per arm)."""
    runs = {name: label_draws(root / EXPERIMENTS_DIR / entry["run"]) for name, entry in spec["arms"].items()}
    reference = spec.get("reference")
    rows = []
    for name, entry in spec["arms"].items():
        for size, part in runs[name].items():
            first = part[part["draw"] == part["draw"].min()].sort_values("image_id", kind="stable")
            labels, patients, images = first["label"].to_numpy(), first["patient_id"].to_numpy(), first["image_id"]
            scores = draw_scores(part, images)
            summary = evaluation.mean_auc_ci(labels, scores, patients, COMPARISON_BOOTSTRAP, COMPARISON_SEED)
            row = [entry["label"], str(size), str(len(scores)), ",".join(map(str, sorted(first["fold"].unique()))),
                   mean_sd(summary["per_seed"]), interval(summary["value"], summary["ci_low"], summary["ci_high"])]
            if reference and name != reference and size in runs[reference]:
                other = draw_scores(runs[reference][size], images)
                result = evaluation.paired_auc_difference(labels, scores, other, patients, COMPARISON_BOOTSTRAP,
                                                          COMPARISON_SEED)
                row += [interval(result["difference"], result["ci_low"], result["ci_high"], signed=True),
                        verdict(result["ci_low"], result["ci_high"])]
            elif reference:
                row += ["", ""]
            rows.append(row)
    headers = ["arm", "labeled images", "draws", "test folds", "AUC mean ± sd over draws",
               "mean AUC [95% CI, draws and patients resampled]"]
    if reference:
        headers += [f"AUC − {spec['arms'][reference]['label']}, paired [95% CI]", "reading"]
    return markdown(headers, rows)
