"""What a fine-tuning run writes: metrics with CIs, predictions.csv, results.json / .md, manifest, figures."""

from __future__ import annotations

import csv
import dataclasses
import logging
import platform
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import timm
import torch
import transformers
import yaml

from training import evaluation
from training.atomic import write_json_atomic
from training.config import FinetuneConfig, config_to_dict
from training.finetune.data import LabeledData
from training.finetune.train import FoldOutcome
from training.folds import Fold

LOGGER = logging.getLogger(__name__)
INNER_VALIDATION = "each fold's inner validation split (patients held out of its training side; never its test fold)"
SELECTION = (  # the choices a run makes itself and the data each used (results.json "selection"; the model card)
    {"choice": "best epoch of each fold", "data": INNER_VALIDATION, "criterion": "highest AUC",
     "validation_only": True},
    {"choice": "calibration (temperature and bias) of each fold", "data": INNER_VALIDATION,
     "criterion": "lowest NLL", "validation_only": True},
    {"choice": "decision threshold of each fold", "data": INNER_VALIDATION, "criterion": "Youden's J",
     "validation_only": True},
    {"choice": "final model: epochs, threshold", "data": "the folds' choices above",
     "criterion": "median best epoch, median threshold", "validation_only": True},
    {"choice": "final model: calibration (temperature and bias)",
     "data": "a patient-grouped holdout of the final model's training data", "criterion": "lowest NLL",
     "validation_only": True},
)
# (fold number, rows, (n, 2) logits, (temperature, bias), threshold): what prediction_table writes a row of per image
PredictionRecord = tuple[int, np.ndarray, np.ndarray, tuple[float, float], float]
# a calibration: (temperature, bias), each a number or one per row (pooled folds)
Calibration = tuple[np.ndarray | float, np.ndarray | float]
PREDICTION_COLUMNS = ["image_id", "patient_id", "fold", "label", "prob_malignant", "prob_uncalibrated", "threshold"]
METRIC_NAMES = ("auc", "sensitivity", "specificity", "accuracy", "ece_before", "ece_after")
EXACT_DIGITS = 17  # significant digits that write a float64 back exactly (metrics pooled from the file match)


@dataclasses.dataclass
class Pooled:
    """All test folds together, each row with its own fold's calibration and threshold."""

    rows: np.ndarray  # (n_test_total,)
    logits: np.ndarray  # (n_test_total, 2)
    calibration: Calibration  # temperature (n_test_total,), bias (n_test_total,)
    threshold: np.ndarray  # (n_test_total,)
    metrics: dict[str, dict[str, float]]


def prediction_record(fold_number: int, rows: np.ndarray, logits: np.ndarray, outcome: FoldOutcome) -> PredictionRecord:
    """`rows`' logits `(n, 2)` with the fold's calibration and threshold."""
    return fold_number, rows, logits, (outcome.temperature, outcome.bias), outcome.threshold


def fold_metrics(
    config: FinetuneConfig, data: LabeledData, rows: np.ndarray, logits: np.ndarray, calibration: Calibration,
    threshold: np.ndarray | float, seed: int,
) -> dict[str, dict[str, float]]:
    """Metrics with patient-bootstrap CIs for test `rows` (per-row calibration/threshold allowed when pooled)."""
    calibrated = evaluation.positive_probability(logits, *calibration)
    return evaluation.metrics_with_ci(
        data.labels[rows], calibrated, evaluation.positive_probability(logits), data.patient_ids[rows], threshold,
        n_boot=config.bootstrap_samples, seed=seed, n_bins=config.ece_bins,
    )


def mean_std(fold_results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof 1) over folds of each metric's point value."""
    summary = {}
    for name in METRIC_NAMES:
        values = np.array([fold["metrics"][name]["value"] for fold in fold_results], dtype=float)
        summary[name] = {
            "mean": float(np.nanmean(values)),
            "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0,
        }
    return summary


def prediction_columns(data: LabeledData) -> list[str]:
    """`PREDICTION_COLUMNS`, and `device` (each image's scanner) when the store has one."""
    return PREDICTION_COLUMNS + (["device"] if data.devices is not None else [])


def prediction_table(data: LabeledData, records: list[PredictionRecord]) -> list[list[Any]]:
    """Rows of `prediction_columns(data)` for `(fold, rows, logits, calibration, threshold)` records, every digit
    kept."""
    table = []
    for fold_number, rows, logits, calibration, threshold in records:
        calibrated = evaluation.positive_probability(logits, *calibration)
        raw = evaluation.positive_probability(logits)
        for row, probability, raw_probability in zip(rows, calibrated, raw):
            table.append([data.image_ids[row], data.patient_ids[row], fold_number, int(data.labels[row]),
                          *(f"{value:.{EXACT_DIGITS}g}" for value in (probability, raw_probability, threshold)),
                          *([data.devices[row]] if data.devices is not None else [])])
    return table


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """A CSV file with a header row."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_config(output_dir: Path, config: FinetuneConfig) -> None:
    """config.yaml: the resolved configuration (YAML file plus options)."""
    (output_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def write_manifest(output_dir: Path, config: FinetuneConfig, results: dict[str, Any]) -> None:
    """manifest.json (command, commit, machine, wall time, library versions, the files written) beside config.yaml,
    so a reported run names how it was made."""
    write_config(output_dir, config)
    versions = {module.__name__: module.__version__ for module in (torch, timm, transformers, datasets)}
    manifest = {key: results[key] for key in ("command", "commit", "machine", "wall_time_s")}
    manifest.update(python=platform.python_version(), versions=versions, config="config.yaml",
                    files=sorted(path.name for path in output_dir.iterdir() if path.is_file()))
    write_json_atomic(output_dir / "manifest.json", manifest)


def results_markdown(results: dict[str, Any]) -> str:
    """results.md: per-fold and pooled metrics with 95% CIs, then mean ± std over folds."""
    headers = ["fold", "n test", "AUC", "sensitivity", "specificity", "accuracy", "ECE before", "ECE after",
               "threshold", "T", "bias"]
    rows = []
    for fold in results["folds"]:
        metrics = fold["metrics"]
        intervals = [evaluation.format_interval(metrics[name]) for name in METRIC_NAMES]
        bias = fold.get("calibration_bias", 0.0)  # 0 in runs from before the bias
        calibration = [f"{fold['threshold']:.3f}", f"{fold['temperature']:.3f}", f"{bias:+.3f}"]
        rows.append([fold["fold"], fold["n_test"], *intervals, *calibration])
    pooled = results["pooled"]
    rows.append(["pooled", sum(fold["n_test"] for fold in results["folds"]),
                 *(evaluation.format_interval(pooled[name]) for name in METRIC_NAMES), *["per fold"] * 3])
    summary = results["mean_std"]
    rows.append(["mean ± std", "", *(f"{summary[name]['mean']:.3f} ± {summary[name]['std']:.3f}"
                                     for name in METRIC_NAMES), "", "", ""])
    text = f"# Fine-tuning results (init: {results['init']})\n\n"
    text += f"Command: `{results['command']}`  \nCommit: {results['commit']}; machine: {results['machine']}; "
    text += f"wall time {results['wall_time_s']:.0f} s.\n\n"
    text += "95% CIs: patient bootstrap. Threshold (Youden's J), temperature T and bias fitted on each fold's inner "
    text += f"validation split only. {results['class_weighting']}\n\n"
    text += evaluation.markdown_table(headers, rows)
    final = results["final_model"]
    if final["path"]:
        text += f"\nFinal model: `{final['path']}` (threshold {final['threshold']:.3f}, temperature "
        text += f"{final['temperature']:.3f}, bias {final.get('calibration_bias', 0.0):+.3f}).\n"
    return text


def write_outputs(
    config: FinetuneConfig, data: LabeledData, folds: list[Fold], outcomes: list[FoldOutcome],
    pooled: Pooled, prediction_records: list, results: dict[str, Any], output_dir: Path,
) -> None:
    """results.json, results.md, predictions.csv and the figures (main process)."""
    curves = {}
    for fold, outcome in zip(folds, outcomes):
        calibrated = evaluation.positive_probability(outcome.test_logits, outcome.temperature, outcome.bias)
        curves[f"fold {fold.number}"] = (data.labels[fold.test], calibrated, data.patient_ids[fold.test])
    pooled_logits = pooled.logits
    pooled_probability = evaluation.positive_probability(pooled_logits, *pooled.calibration)
    pooled_labels = data.labels[pooled.rows]
    curves["pooled"] = (pooled_labels, pooled_probability, data.patient_ids[pooled.rows])
    evaluation.plot_roc(curves, output_dir / "roc.png", seed=config.seed)
    evaluation.plot_reliability(
        {"before scaling": (pooled_labels, evaluation.positive_probability(pooled_logits)),
         "after scaling": (pooled_labels, pooled_probability)},
        output_dir / "reliability.png", n_bins=config.ece_bins,
    )
    evaluation.plot_confusion(pooled_labels, pooled_probability, pooled.threshold, output_dir / "confusion.png",
                              data.class_names)
    write_csv(output_dir / "predictions.csv", prediction_columns(data), prediction_table(data, prediction_records))
    write_json_atomic(output_dir / "results.json", results)
    (output_dir / "results.md").write_text(results_markdown(results))
    write_manifest(output_dir, config, results)
    LOGGER.info("Results: %s, %s, %s; figures in %s; final model: %s", output_dir / "results.json",
                output_dir / "results.md", output_dir / "predictions.csv", output_dir, results["final_model"]["path"])

