"""Label efficiency: test AUC against training-set size, patient-drawn subsets, a CI over draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator

import usvcl_hf
from training import evaluation
from training.atomic import write_json_atomic
from training.config import FinetuneConfig
from training.finetune.data import LabeledData
from training.finetune.outputs import (
    PredictionRecord,
    prediction_columns,
    prediction_record,
    prediction_table,
    write_csv,
)
from training.finetune.train import SEED_STREAM_LABELS, run_fold
from training.folds import Fold, draw_label_subset


def label_draw(
    accelerator: Accelerator, config: FinetuneConfig, data: LabeledData, processor: usvcl_hf.UsvclImageProcessor,
    folds: list[Fold], size: int, draw: int,
) -> tuple[dict[str, Any], list[PredictionRecord]]:
    """One draw of `size` training labels per fold: per-fold results and the prediction records of its test folds."""
    fold_results, records = [], []
    for fold in folds:
        subset = draw_label_subset(fold.train, data.labels, data.patient_ids, size,
                                   seed=config.seed + SEED_STREAM_LABELS * 10**6 + size * 100 + draw)
        outcome = run_fold(accelerator, config, data, processor, fold, subset,
                           f"{size} labels, draw {draw + 1}, fold {fold.number}")
        calibrated = evaluation.positive_probability(outcome.test_logits, outcome.temperature, outcome.bias)
        fold_results.append({"fold": fold.number, "n_train": len(subset), "val_auc": outcome.val_auc,
                             "best_epoch": outcome.best_epoch,
                             "auc": evaluation.auc(data.labels[fold.test], calibrated)})
        records.append(prediction_record(fold.number, fold.test, outcome.test_logits, outcome))
    return {"draw": draw, "folds": fold_results}, records


def run_label_efficiency(
    accelerator: Accelerator, config: FinetuneConfig, data: LabeledData, processor: usvcl_hf.UsvclImageProcessor,
    folds: list[Fold], output_dir: Path,
) -> list[dict[str, Any]]:
    """AUC against training-set size: per size, `label_draws` patient-drawn subsets of each fold's training side.

    Each draw's test predictions (the same test rows for every draw) go to `label_efficiency_predictions.csv`.
    Per size: the mean pooled test AUC over draws with a 95% CI that resamples draws and test patients jointly
    (`evaluation.mean_auc_ci`), and the spread over draws (sd, ddof 1).
    """
    summary, prediction_rows = [], []
    pooled_rows = np.concatenate([fold.test for fold in folds])  # the same test rows, in this order, for every draw
    for size in config.train_sizes or []:
        draws, draw_scores = [], []
        for draw in range(config.label_draws):
            result, records = label_draw(accelerator, config, data, processor, folds, size, draw)
            draw_scores.append(np.concatenate([evaluation.positive_probability(logits, *calibration)
                                               for _, _, logits, calibration, _ in records]))  # (n_test_total,)
            prediction_rows += [[size, draw, *row] for row in prediction_table(data, records)]
            draws.append(result)
        over_draws = evaluation.mean_auc_ci(data.labels[pooled_rows], np.stack(draw_scores),
                                            data.patient_ids[pooled_rows], config.bootstrap_samples, config.seed)
        for result, value in zip(draws, over_draws["per_seed"]):
            result["pooled_auc"] = value
        summary.append({
            "num_labels": size, "draws": draws, "auc_mean": over_draws["value"],
            "auc_std": over_draws["spread"]["sd"] if len(draws) > 1 else 0.0,
            "auc_ci_low": over_draws["ci_low"], "auc_ci_high": over_draws["ci_high"],
            "ci": "95% percentile interval of the mean AUC over draws, resampling draws and test patients jointly",
        })
        if accelerator.is_main_process:  # after every size, so a run stopped by a deadline keeps what it finished
            write_json_atomic(output_dir / "label_efficiency.json", summary)
            write_csv(output_dir / "label_efficiency_predictions.csv",
                      ["num_labels", "draw", *prediction_columns(data)], prediction_rows)
            evaluation.plot_label_efficiency(summary, output_dir / "label_efficiency.png")
    return summary

