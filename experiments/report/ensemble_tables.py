"""Tables over ensembles of runs: candidates chosen by mean inner-validation AUC, and calibration methods."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from experiments import ensembles
from experiments.report.runs import VALIDATION, Run
from experiments.report.statistics import COMPARISON_BOOTSTRAP, COMPARISON_SEED, Statistics
from experiments.report.text import interval, markdown, verdict
from training import evaluation


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
