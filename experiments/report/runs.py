"""Committed run folders as the report reads them: one trained seed per `Run`, the seeds of an arm as an `Arm`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments.run_folders import run_parts

EXPERIMENTS_DIR = Path("experiments")  # run folders in the spec are relative to it (QUESTION/results/ARM/seedN)
FINISHED, STOPPED = "predictions.csv", "predictions_done.csv"  # a run's test predictions; those of a stopped run
VALIDATION = "val_predictions.csv"  # a run's inner-validation predictions (each fold's, calibrated)


@dataclasses.dataclass
class Run:
    """One trained seed of an arm: test predictions (one row per image, sorted by image id) and its run records."""

    folder: Path
    predictions: pd.DataFrame
    results: list[dict[str, Any]]  # results.json of the folder, or of each part
    manifests: list[dict[str, Any]]  # manifest.json beside each results.json (empty dicts where missing)
    seed: int
    validation: pd.DataFrame | None = None  # inner-validation predictions (val_predictions.csv of every part)


@dataclasses.dataclass
class Arm:
    """A named arm: one run per training seed."""

    name: str
    label: str
    runs: list[Run]


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file, or a clear error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (every reported run needs its results.json and predictions.csv)")
    return json.loads(path.read_text())


def read_predictions(path: Path) -> pd.DataFrame:
    """predictions.csv with patient ids as strings."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (every reported run needs its predictions.csv)")
    return pd.read_csv(path, dtype={"patient_id": str, "image_id": str})


def read_part(part: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A run folder's (or fold folder's) predictions and results: results.json, or for a run stopped by a deadline its
    predictions_done.csv, folds_done.json and config.yaml (`partial` set; only its finished folds are reported)."""
    if (part / FINISHED).is_file():
        return read_predictions(part / FINISHED), read_json(part / "results.json")
    folds = json.loads((part / "folds_done.json").read_text())
    config = yaml.safe_load((part / "config.yaml").read_text()) if (part / "config.yaml").is_file() else None
    if config is None:
        raise FileNotFoundError(f"{part}: a stopped run needs its config.yaml to be reported")
    return read_predictions(part / STOPPED), {"folds": folds, "config": config, "partial": True}


def load_runs(folder: Path) -> list[Run]:
    """The runs of one folder: one, or one per value of a `seed` column in its predictions."""
    parts = run_parts(folder, (FINISHED, STOPPED))
    read = [read_part(part) for part in parts]
    predictions = pd.concat([rows for rows, _ in read], ignore_index=True)
    results = [part_results for _, part_results in read]
    manifests = [json.loads((part / "manifest.json").read_text()) if (part / "manifest.json").is_file() else {}
                 for part in parts]
    if "seed" not in predictions.columns:
        predictions = predictions.assign(seed=results[0]["config"]["seed"])
    validation = None
    if all((part / VALIDATION).is_file() for part in parts):
        validation = pd.concat([read_predictions(part / VALIDATION) for part in parts], ignore_index=True)
    runs = []
    for seed, rows in predictions.groupby("seed", sort=True):
        rows = rows.sort_values("image_id", kind="stable").reset_index(drop=True)
        if rows["image_id"].duplicated().any():
            raise ValueError(f"{folder}: an image is scored twice for seed {seed} (a fold in two parts?)")
        seed_validation = validation
        if validation is not None and "seed" in validation.columns:
            seed_validation = validation[validation["seed"] == seed]
        runs.append(Run(folder, rows, results, manifests, int(seed), seed_validation))
    return runs


def folds_of(arm: Arm) -> list[int]:
    """Test folds an arm's first seed scored."""
    return sorted(int(fold) for fold in arm.runs[0].predictions["fold"].unique())


def fold_records(run: Run) -> list[dict[str, Any]]:
    """Per-fold records of all parts of a run (results.json `folds`)."""
    return sorted((fold for results in run.results for fold in results["folds"]), key=lambda fold: fold["fold"])


def mean_validation_auc(arm: Arm, folds: set[int] | None = None) -> float:
    """Mean over seeds and folds (all, or `folds`) of each fold's best inner-validation AUC (`folds[*].val_auc`)."""
    return float(np.mean([fold["val_auc"] for run in arm.runs for fold in fold_records(run)
                          if folds is None or fold["fold"] in folds]))


def load_arms(spec: dict[str, Any], root: Path) -> dict[str, Arm]:
    """Every arm the tables name, with its runs (one per seed) read from the committed folders."""
    arms = {}
    for name, entry in spec["arms"].items():
        runs = [run for folder in entry["runs"] for run in load_runs(root / EXPERIMENTS_DIR / folder)]
        arms[name] = Arm(name, entry["label"], runs)
    return arms
