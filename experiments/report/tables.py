"""Tables over arms: pooled metrics, AUC per fold, paired differences, arms over seeds, choices on validation."""

from __future__ import annotations

from typing import Any

from experiments.report.runs import Arm, fold_records, folds_of, mean_validation_auc
from experiments.report.statistics import Statistics
from experiments.report.text import interval, markdown, mean_sd, metric_text, verdict

METRICS = ("auc", "sensitivity", "specificity", "accuracy", "ece_before", "ece_after")


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
