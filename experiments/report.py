"""Rebuild every results table of the documents from the committed runs: one command, so prose cannot drift from data.

    python -m experiments.report             # rewrite the tables between the documents' markers
    python -m experiments.report --check     # exit 1 (and show the difference) if a committed document is stale
    python -m experiments.report --spec experiments/report.yaml --root .

The tables are declared in `experiments/report.yaml`:
- `arms`: name -> label and run folders (relative to `experiments/results/`), one folder per training seed; a folder
  without `predictions.csv` pools its `part*/` folders (folds split over processes); a `predictions.csv` with a
  `seed` column holds several seeds.
- `tables`: name -> document, kind (`metrics`, `fold_auc`, `paired`, `arms`, `choice`, `ensembles`, `calibration`,
  `label_efficiency`, `lesion`), the arms (or, for `label_efficiency` and `lesion`, the run folders; for `ensembles`,
  candidates: label, ensembles (each a list of members `ARM` or `ARM:SEED`) and optionally `calibration`, a method
  of `experiments.ensembles.CALIBRATIONS` fitted again on each member's inner validation), a reference arm
  (candidate) for comparisons and optionally the columns.
- `cards`: bundled model folders whose README.md is rendered again from their results.json (`training.export`).

In a document a table sits between `<!-- report:NAME -->` and `<!-- /report -->`; everything else is hand-written.
Every number is computed here from the runs' `predictions.csv` (metrics, patient-bootstrap CIs, paired differences,
spread over seeds) or read from `results.json` / `manifest.json` (validation AUCs, recipe, commit, machine, wall
time), through `training.evaluation`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments import ensembles, lesion_report
from experiments.run_folders import run_parts
from training import evaluation

logger = logging.getLogger("experiments.report")
RESULTS_DIR = Path("experiments")  # run folders in the spec are relative to it (QUESTION/results/ARM/seedN)
DEFAULT_SPEC = Path("experiments/report.yaml")
FINISHED, STOPPED = "predictions.csv", "predictions_done.csv"  # a run's test predictions; those of a stopped run
VALIDATION = "val_predictions.csv"  # a run's inner-validation predictions (each fold's, calibrated)
BLOCK = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /report -->)", re.DOTALL)
METRICS = ("auc", "sensitivity", "specificity", "accuracy", "ece_before", "ece_after")
COMPARISON_BOOTSTRAP, COMPARISON_SEED = 1000, 0
DIGITS = 3


# ---------------------------------------------------------------------------------------------------------- helpers
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
    """A part's predictions and results: results.json, or for a run stopped by a deadline its predictions_done.csv,
    folds_done.json and config.yaml (`partial` set; only its finished folds are reported)."""
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


def interval(value: float, low: float, high: float, signed: bool = False) -> str:
    """`0.812 [0.790, 0.836]` (or signed `+0.012 [-0.004, +0.028]`)."""
    form = f"{{:+.{DIGITS}f}}" if signed else f"{{:.{DIGITS}f}}"
    return f"{form.format(value)} [{form.format(low)}, {form.format(high)}]"


def metric_text(metric: dict[str, float]) -> str:
    """`value [low, high]` of a metrics_with_ci entry."""
    return interval(metric["value"], metric["ci_low"], metric["ci_high"])


def mean_sd(values: list[float]) -> str:
    """`mean ± sd` (ddof 1; one value: the value alone)."""
    spread = evaluation.seed_spread(values)
    if spread["n"] < 2:
        return f"{spread['mean']:.{DIGITS}f}"
    return f"{spread['mean']:.{DIGITS}f} ± {spread['sd']:.{DIGITS}f}"


def verdict(low: float, high: float) -> str:
    """What a paired CI of A - B supports."""
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "no measurable difference"


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    return evaluation.markdown_table(headers, rows)


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


def recipe(arm: Arm) -> str:
    """Backbone, input size, init, learning rate and schedule (and the lesion-mask loss's weight, or the lesion
    crops' margin, when used), from the run's configuration."""
    config = arm.runs[0].results[0]["config"]
    schedule = (f"{config['max_steps']} steps" if config.get("max_steps", -1) > 0
                else f"{config['num_epochs']} epochs")
    init = config["init"]
    rate = f"{config['learning_rate']:.0e}".replace("e-0", "e-")  # 0.0003 -> 3e-4
    mask = f", mask loss {config['mask_loss_weight']:g}" if config.get("mask_loss_weight", 0) > 0 else ""
    crops = f", lesion crops (margin {config['crop_margin']:g})" if config.get("lesion_crop") else ""
    return f"{config['backbone']} {config['image_size'] or 224} px, {init}, lr {rate}, {schedule}{mask}{crops}"


def provenance(arm: Arm) -> tuple[str, str, str]:
    """(commit, machine, wall time) from the runs' manifests (results.json where a manifest lacks a field)."""
    records = [manifest or results for run in arm.runs for manifest, results in zip(run.manifests, run.results)]
    commits = sorted({str(record.get("commit", "unknown")) for record in records})
    machines = sorted({str(record.get("machine", "unknown")) for record in records})
    wall = max(float(record.get("wall_time_s", float("nan"))) for record in records)  # parts ran side by side
    return ", ".join(commits), "; ".join(machines), f"{wall:.0f} s"


# ---------------------------------------------------------------------------------------------------------- tables
def metric_columns(stats: Statistics, arm: Arm, index: int) -> dict[str, str]:
    """Every column a `metrics` table can show, for seed `index` of `arm`."""
    pooled = stats.pooled(arm.name, index)
    fold_aucs = [metric["value"] for metric in stats.fold_auc(arm.name, index).values()]
    run = arm.runs[index]
    commit, machine, wall = provenance(Arm(arm.name, arm.label, [run]))
    label = arm.label if len(arm.runs) == 1 else f"{arm.label} (seed {run.seed})"
    stopped = " (stopped)" if any(results.get("partial") for results in run.results) else ""
    columns = {"arm": label, "recipe": recipe(arm), "folds": ",".join(map(str, folds_of(arm))) + stopped}
    columns.update({name: metric_text(pooled[name]) for name in METRICS})
    columns.update(fold_auc=mean_sd(fold_aucs), val_auc=f"{mean_validation_auc(Arm(arm.name, arm.label, [run])):.3f}",
                   wall_time=wall, commit=commit, machine=machine)
    return columns


METRIC_HEADERS = {
    "arm": "arm", "recipe": "fine-tuning", "folds": "test folds", "auc": "AUC (pooled) [95% CI]",
    "sensitivity": "sensitivity", "specificity": "specificity", "accuracy": "accuracy", "ece_before": "ECE before",
    "ece_after": "ECE after scaling", "fold_auc": "fold AUC mean ± sd", "val_auc": "mean validation AUC",
    "wall_time": "wall time", "commit": "commit", "machine": "machine",
}
DEFAULT_METRIC_COLUMNS = ["arm", "folds", "auc", "sensitivity", "specificity", "accuracy", "ece_before", "ece_after",
                          "fold_auc", "val_auc", "wall_time", "commit"]


def metrics_table(spec: dict[str, Any], stats: Statistics) -> str:
    """Pooled metrics with CIs, one row per arm and seed."""
    columns = spec.get("columns", DEFAULT_METRIC_COLUMNS)
    rows = []
    for name in spec["arms"]:
        arm = stats.arms[name]
        for index in range(len(arm.runs)):
            values = metric_columns(stats, arm, index)
            rows.append([values[column] for column in columns])
    return markdown([METRIC_HEADERS[column] for column in columns], rows)


def fold_auc_table(spec: dict[str, Any], stats: Statistics) -> str:
    """Test AUC [95% CI] per fold, first seed of each arm, so arms run on fewer folds compare on the same ones."""
    numbers = sorted({fold for name in spec["arms"] for fold in folds_of(stats.arms[name])})
    rows = []
    for name in spec["arms"]:
        by_fold = stats.fold_auc(name)
        rows.append([stats.arms[name].label, *(metric_text(by_fold[k]) if k in by_fold else "—" for k in numbers)])
    return markdown(["arm", *(f"fold {k} AUC" for k in numbers)], rows)


def paired_table(spec: dict[str, Any], stats: Statistics) -> str:
    """Paired differences of pooled AUC against each arm's reference (the table's, or the arm's own pair)."""
    rows = []
    for entry in spec["arms"]:
        name, reference = (entry, spec["reference"]) if isinstance(entry, str) else entry
        result = stats.paired(name, reference)
        rows.append([
            stats.arms[name].label, stats.arms[reference].label, str(result["n_images"]),
            f"{result['auc_a']['n']} / {result['auc_b']['n']}",
            interval(result["difference"], result["ci_low"], result["ci_high"], signed=True),
            f"{result['folds_ahead']} of {result['n_folds']}", verdict(result["ci_low"], result["ci_high"]),
        ])
    return markdown(["arm A", "arm B", "test images", "seeds (A / B)", "AUC A − B, paired [95% CI]",
                     "folds where A is ahead", "reading"], rows)


def arms_table(spec: dict[str, Any], stats: Statistics) -> str:
    """Arms over seeds: spread, mean AUC with a seed-and-patient CI, paired difference to the reference arm."""
    reference = spec.get("reference")
    rows = []
    for name in spec["arms"]:
        arm, summary = stats.arms[name], stats.over_seeds(name)
        spread = summary["spread"]
        row = [arm.label, recipe(arm), str(spread["n"]), mean_sd(summary["per_seed"]),
               interval(summary["value"], summary["ci_low"], summary["ci_high"]), f"{mean_validation_auc(arm):.3f}"]
        if reference and name != reference:
            result = stats.paired(name, reference)
            row += [interval(result["difference"], result["ci_low"], result["ci_high"], signed=True),
                    verdict(result["ci_low"], result["ci_high"])]
        elif reference:
            row += ["reference", ""]
        rows.append(row)
    headers = ["arm", "fine-tuning", "seeds", "pooled AUC, mean ± sd over seeds",
               "mean AUC [95% CI, seeds and patients resampled]", "mean validation AUC"]
    if reference:
        headers += [f"AUC − {stats.arms[reference].label}, paired [95% CI]", "reading"]
    if spec.get("ensemble"):
        rows = [row + ensemble_cells(stats, name) for row, name in zip(rows, spec["arms"])]
        headers += ["seed ensemble AUC [95% CI]", "ensemble − one seed, paired [95% CI]"]
    return markdown(headers, rows)


def ensemble_cells(stats: Statistics, name: str) -> list[str]:
    """The seed-ensemble cells of an arms-table row (empty for a single seed)."""
    if len(stats.arms[name].runs) < 2:
        return ["", ""]
    ensemble = stats.seed_ensemble(name)
    auc, gain = ensemble["auc"], ensemble["gain"]
    return [interval(auc["value"], auc["ci_low"], auc["ci_high"]),
            interval(gain["difference"], gain["ci_low"], gain["ci_high"], signed=True)]


def choice_table(spec: dict[str, Any], stats: Statistics) -> str:
    """Candidates of one choice by mean inner-validation AUC over the folds every candidate finished (and over
    seeds); the highest is chosen."""
    common = set.intersection(*({fold["fold"] for run in stats.arms[name].runs for fold in fold_records(run)}
                                for name in spec["arms"]))
    scores = {name: mean_validation_auc(stats.arms[name], common) for name in spec["arms"]}
    chosen = max(scores, key=scores.get)
    rows = [[stats.arms[name].label, f"{score:.3f}", "**chosen**" if name == chosen else ""]
            for name, score in scores.items()]
    return markdown(["candidate", "mean inner-validation AUC (folds)", "choice"], rows)


def member_run(stats: Statistics, member: str) -> Run:
    """The run an ensemble member names: `ARM` (an arm of one seed) or `ARM:SEED`."""
    name, _, seed = member.partition(":")
    runs = [run for run in stats.arms[name].runs if not seed or run.seed == int(seed)]
    if len(runs) != 1:
        seeds = [run.seed for run in stats.arms[name].runs]
        raise ValueError(f"ensemble member {member!r}: arm {name!r} has seeds {seeds}; name one as ARM:SEED")
    return runs[0]


def run_tables(run: Run, calibration: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's inner-validation and test predictions as committed (`calibration` None), or with each fold's
    calibration fitted again by that method of `ensembles.CALIBRATIONS` on its validation rows."""
    if run.validation is None:
        raise FileNotFoundError(f"{run.folder}: no {VALIDATION} in every part (needed to choose an ensemble)")
    if calibration is None:
        return run.validation, run.predictions
    if calibration not in ensembles.CALIBRATIONS:
        raise ValueError(f"calibration {calibration!r}: allowed {sorted(ensembles.CALIBRATIONS)} (or none)")
    return ensembles.recalibrate(run.validation, run.predictions, calibration)


def ensemble_rows(stats: Statistics, members: list[str], which: str, calibration: str | None = None) -> pd.DataFrame:
    """The members' mean score on their test images (`which="predictions"`) or inner validation ("validation"),
    each member calibrated as `run_tables` says."""
    runs = [member_run(stats, member) for member in members]
    tables = [run_tables(run, calibration)[0 if which == "validation" else 1] for run in runs]
    return ensembles.mean_score(tables, [run.folder for run in runs])


def candidate_scores(stats: Statistics, spec: dict[str, Any]) -> dict[str, Any]:
    """A candidate's numbers: mean inner-validation AUC over its ensembles and folds; test labels, patients and
    scores `(S, n)` (one row per ensemble, e.g. per seed of a member) on the test images, sorted by image id; the
    calls at the members' mean threshold and the ECE (10 equal-width bins) of the mean probability, each a mean over
    the ensembles."""
    calibration = spec.get("calibration")
    validation = [ensembles.mean_fold_auc(ensemble_rows(stats, members, "validation", calibration))
                  for members in spec["ensembles"]]
    tests = [ensemble_rows(stats, members, "predictions", calibration).sort_values("image_id", kind="stable")
             for members in spec["ensembles"]]
    return {"validation": float(np.mean(validation)), "labels": tests[0]["label"].to_numpy(),
            "patients": tests[0]["patient_id"].to_numpy(), "images": tests[0]["image_id"].to_numpy(),
            "scores": np.stack([rows["prob_malignant"].to_numpy() for rows in tests]),  # (S, n)
            "calls": np.mean([ensembles.sensitivity_specificity(rows) for rows in tests], axis=0),  # (S, 2) -> (2,)
            "ece": float(np.mean([ensembles.calibration_error(rows) for rows in tests]))}


ENSEMBLE_HEADERS = {
    "candidate": "candidate", "models": "models averaged", "ensembles": "ensembles (seeds)",
    "validation": "mean inner-validation AUC", "choice": "choice",
    "test": "test pooled AUC [95% CI, seeds and patients resampled]",
    "calls": "sensitivity / specificity (mean of the members' thresholds)",
    "ece": "ECE of the mean probability", "difference": "AUC − {reference}, paired [95% CI]", "reading": "reading",
}


def ensemble_comparison(spec: dict[str, Any], stats: Statistics) -> list[dict[str, str]]:
    """One row (`ENSEMBLE_HEADERS` keys, and `name`) per candidate of an `ensembles` table: chosen by mean
    inner-validation AUC (among the `eligible` ones, default all); test AUC, calls, ECE and the paired difference to
    the reference candidate read after."""
    scores = {name: candidate_scores(stats, entry) for name, entry in spec["candidates"].items()}
    eligible = [name for name, entry in spec["candidates"].items() if entry.get("eligible", True)]
    chosen = max(eligible, key=lambda name: scores[name]["validation"])
    reference = scores[spec["reference"]]
    rows = []
    for name, entry in spec["candidates"].items():
        candidate = scores[name]
        if not np.array_equal(candidate["images"], reference["images"]):
            raise ValueError(f"ensemble candidate {name!r} scores other test images than {spec['reference']!r}")
        test = evaluation.mean_auc_ci(candidate["labels"], candidate["scores"], candidate["patients"],
                                      COMPARISON_BOOTSTRAP, COMPARISON_SEED)
        row = {"name": name, "candidate": entry["label"], "models": str(len(entry["ensembles"][0])),
               "ensembles": str(len(entry["ensembles"])), "validation": f"{candidate['validation']:.3f}",
               "choice": "**chosen**" if name == chosen else ("" if name in eligible else "not a candidate"),
               "test": interval(test["value"], test["ci_low"], test["ci_high"]),
               "calls": " / ".join(f"{value:.3f}" for value in candidate["calls"]),
               "ece": f"{candidate['ece']:.3f}",
               "difference": "reference", "reading": ""}
        if name != spec["reference"]:
            result = evaluation.paired_auc_difference(candidate["labels"], candidate["scores"], reference["scores"],
                                                      candidate["patients"], COMPARISON_BOOTSTRAP, COMPARISON_SEED)
            row.update(difference=interval(result["difference"], result["ci_low"], result["ci_high"], signed=True),
                       reading=verdict(result["ci_low"], result["ci_high"]))
        rows.append(row)
    return rows


def ensembles_table(spec: dict[str, Any], stats: Statistics) -> str:
    """Ensemble candidates (each: one or more ensembles of runs, their mean calibrated score) chosen by mean
    inner-validation AUC; then, read after the choice, test pooled AUC (seeds and patients resampled) and the
    paired difference to the reference candidate."""
    reference = spec["candidates"][spec["reference"]]["label"]
    headers = [text.format(reference=reference) for text in ENSEMBLE_HEADERS.values()]
    return markdown(headers, [[row[key] for key in ENSEMBLE_HEADERS] for row in ensemble_comparison(spec, stats)])


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
    runs = {name: label_draws(root / RESULTS_DIR / entry["run"]) for name, entry in spec["arms"].items()}
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


def calibration_table(spec: dict[str, Any], stats: Statistics) -> str:
    """Calibration methods (`ensembles.CALIBRATIONS`) for the named arms' runs: NLL and ECE on inner-validation
    patients each fit did not see (`ensembles.crossfit_calibration`; means over folds and seeds), the method with the
    lower mean NLL over the arms chosen; then, read after the choice, the pooled test ECE with each method fitted on
    every fold's whole validation split (mean over seeds)."""
    methods = list(ensembles.CALIBRATIONS)
    scores = {}  # (arm, method) -> cross-fitted validation NLL, ECE and test ECE
    for name in spec["arms"]:
        for method in methods:
            runs = stats.arms[name].runs
            crossfit = [ensembles.crossfit_calibration(run_tables(run)[0], method) for run in runs]
            tests = [run_tables(run, method)[1] for run in runs]
            scores[name, method] = [np.mean([fit["nll"] for fit in crossfit]),
                                    np.mean([fit["ece"] for fit in crossfit]),
                                    np.mean([ensembles.calibration_error(rows) for rows in tests])]
    chosen = min(methods, key=lambda method: np.mean([scores[name, method][0] for name in spec["arms"]]))
    rows = [[stats.arms[name].label, str(len(stats.arms[name].runs)), method.replace("_", " "),
             *(f"{value:.3f}" for value in scores[name, method]), "**chosen**" if method == chosen else ""]
            for name in spec["arms"] for method in methods]
    headers = ["arm", "seeds", "calibration", "validation NLL (cross-fitted)", "validation ECE (cross-fitted)",
               "test ECE (pooled)", "choice (lower mean NLL)"]
    return markdown(headers, rows)


TABLE_KINDS = {"metrics": metrics_table, "fold_auc": fold_auc_table, "paired": paired_table, "arms": arms_table,
               "choice": choice_table, "ensembles": ensembles_table, "calibration": calibration_table}
# kinds built from run folders named in the table itself, not from arms: (table spec, repository root) -> Markdown
RUN_TABLE_KINDS = {"label_efficiency": label_efficiency_table, "lesion": lesion_report.lesion_table}


# ------------------------------------------------------------------------------------------------------------ steps
def load_spec(path: Path) -> dict[str, Any]:
    """The report's YAML spec, checked for the keys every step needs."""
    spec = yaml.safe_load(path.read_text()) or {}
    for key in ("arms", "tables"):
        if key not in spec:
            raise ValueError(f"{path}: the spec needs a {key!r} section")
    for name, table in spec["tables"].items():
        if table.get("kind") not in (*TABLE_KINDS, *RUN_TABLE_KINDS):
            raise ValueError(f"{path}: table {name!r} has kind {table.get('kind')!r}; allowed: "
                             f"{[*TABLE_KINDS, *RUN_TABLE_KINDS]}")
    return spec


def load_arms(spec: dict[str, Any], root: Path) -> dict[str, Arm]:
    """Every arm the tables name, with its runs (one per seed) read from the committed folders."""
    arms = {}
    for name, entry in spec["arms"].items():
        runs = [run for folder in entry["runs"] for run in load_runs(root / RESULTS_DIR / folder)]
        arms[name] = Arm(name, entry["label"], runs)
    return arms


def build_tables(spec: dict[str, Any], root: Path) -> dict[str, dict[str, str]]:
    """`{document: {table name: Markdown}}` for every table of the spec."""
    stats = Statistics(load_arms(spec, root))
    documents: dict[str, dict[str, str]] = {}
    for name, table in spec["tables"].items():
        if table["kind"] in RUN_TABLE_KINDS:
            text = RUN_TABLE_KINDS[table["kind"]](table, root)
        else:
            text = TABLE_KINDS[table["kind"]](table, stats)
        documents.setdefault(table["document"], {})[name] = text
        logger.info("table %s (%s) built", name, table["document"])
    return documents


def render_document(text: str, tables: dict[str, str], path: Path) -> str:
    """`text` with each `<!-- report:NAME -->` block's body replaced by table NAME; every block and table must pair."""
    seen = set()

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in tables:
            raise ValueError(f"{path}: block {name!r} has no table in the spec (remove the block or declare it)")
        seen.add(name)
        return match.group(1) + tables[name] + match.group(4)

    rendered = BLOCK.sub(replace, text)
    missing = sorted(set(tables) - seen)
    if missing:
        raise ValueError(f"{path}: no marker for tables {missing} (add <!-- report:NAME --> ... <!-- /report -->)")
    return rendered


def rendered_card(card: dict[str, Any], root: Path) -> tuple[Path, str]:
    """(README.md path, the card `training.export` renders from the folder's results.json now), in a scratch copy."""
    from training import export

    folder = root / card["folder"]
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / folder.name
        shutil.copytree(folder, copy)
        pretrain_dir = root / card["pretrain_dir"] if card.get("pretrain_dir") else None  # none: not pretrained
        export.rerender_classifier_card(copy, copy / "results.json", pretrain_dir, repo_id=card["repo_id"])
        return folder / "README.md", (copy / "README.md").read_text()


def stale_documents(spec: dict[str, Any], root: Path) -> dict[Path, tuple[str, str]]:
    """`{path: (committed text, regenerated text)}` for every document and card of the spec."""
    documents = {}
    for document, tables in build_tables(spec, root).items():
        path = root / document
        text = path.read_text()
        documents[path] = (text, render_document(text, tables, path))
    for card in spec.get("cards", []):
        path, text = rendered_card(card, root)
        documents[path] = (path.read_text(), text)
    return documents


def check(documents: dict[Path, tuple[str, str]]) -> list[Path]:
    """Log a diff of every stale document; return their paths."""
    stale = []
    for path, (old, new) in documents.items():
        if old != new:
            stale.append(path)
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), str(path), "regenerated", lineterm="")
            logger.warning("%s differs from its data:\n%s", path, "\n".join(list(diff)[:60]))
    return stale


def write(documents: dict[Path, tuple[str, str]]) -> list[Path]:
    """Write the regenerated documents that changed; return their paths."""
    changed = [path for path, (old, new) in documents.items() if old != new]
    for path in changed:
        path.write_text(documents[path][1])
    return changed


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="the tables to build (YAML)")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root the spec's paths start from")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document is stale")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    documents = stale_documents(load_spec(args.root / args.spec), args.root)
    if args.check:
        stale = check(documents)
        logger.info("%d of %d documents up to date", len(documents) - len(stale), len(documents))
        return 1 if stale else 0
    changed = write(documents)
    logger.info("written to %s", ", ".join(map(str, changed)) if changed else "nothing (every document up to date)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
