"""Rebuild every results table of the documents from the committed runs: one command, so prose cannot drift from data.

    python -m experiments.report             # rewrite the tables between the documents' markers
    python -m experiments.report --check     # exit 1 (and show the difference) if a committed document is stale
    python -m experiments.report --spec experiments/report.yaml --root .

The tables are declared in `experiments/report.yaml`:
- `arms`: name -> label and run folders (relative to `experiments/`, as `QUESTION/results/ARM/seedN`), one folder per
  training seed; a folder without `predictions.csv` pools its `fold*/` folders (folds split over processes; `part*/`
  as `training.finetune` runs name them is read too); a `predictions.csv` with a `seed` column holds several seeds.
- `tables`: name -> document, kind (`metrics`, `fold_auc`, `paired`, `arms`, `choice`, `ensembles`, `calibration`,
  `label_efficiency`, `lesion`), the arms (or, for `label_efficiency` and `lesion`, the run folders; for `ensembles`,
  candidates: label, ensembles (each a list of members `ARM` or `ARM:SEED`) and optionally `calibration`, a method
  of `experiments.ensembles.CALIBRATIONS` fitted again on each member's inner validation), a reference arm
  (candidate) for comparisons and optionally the columns.

In a document a table sits between `<!-- report:NAME -->` and `<!-- /report -->`; everything else is hand-written.
Every number is computed here from the runs' `predictions.csv` (metrics, patient-bootstrap CIs, paired differences,
spread over seeds) or read from `results.json` / `manifest.json` (validation AUCs, recipe, commit, machine, wall
time), through `training.evaluation`. The report writes only the documents; model cards are rendered by
`training.export`.

Modules: `runs` (reading run folders), `statistics` (the numbers), `text` (how numbers are written), `tables`,
`ensemble_tables` and `label_efficiency` (one function per table kind), `documents` (markers, stale documents),
`cli` (the command).
"""

from __future__ import annotations

from experiments.report.cli import main
from experiments.report.documents import (
    BLOCK,
    DEFAULT_SPEC,
    RUN_TABLE_KINDS,
    TABLE_KINDS,
    build_tables,
    check,
    load_spec,
    render_document,
    stale_documents,
    write,
)
from experiments.report.ensemble_tables import (
    ENSEMBLE_HEADERS,
    calibration_table,
    candidate_scores,
    ensemble_comparison,
    ensemble_rows,
    ensembles_table,
    member_run,
    run_tables,
)
from experiments.report.label_efficiency import draw_scores, label_draws, label_efficiency_table
from experiments.report.runs import (
    EXPERIMENTS_DIR,
    FINISHED,
    STOPPED,
    VALIDATION,
    Arm,
    Run,
    fold_records,
    folds_of,
    load_arms,
    load_runs,
    mean_validation_auc,
    read_json,
    read_part,
    read_predictions,
)
from experiments.report.statistics import COMPARISON_BOOTSTRAP, COMPARISON_SEED, Statistics, aligned_scores
from experiments.report.tables import (
    METRICS,
    arms_table,
    choice_table,
    fold_auc_table,
    metrics_table,
    paired_table,
    provenance,
    recipe,
)
from experiments.report.text import DIGITS, interval, markdown, mean_sd, metric_text, verdict

__all__ = [
    "BLOCK", "COMPARISON_BOOTSTRAP", "COMPARISON_SEED", "DEFAULT_SPEC", "DIGITS", "ENSEMBLE_HEADERS",
    "EXPERIMENTS_DIR", "FINISHED", "METRICS", "RUN_TABLE_KINDS", "STOPPED", "TABLE_KINDS", "VALIDATION", "Arm", "Run",
    "Statistics", "aligned_scores", "arms_table", "build_tables", "calibration_table", "candidate_scores", "check",
    "choice_table", "draw_scores", "ensemble_comparison", "ensemble_rows", "ensembles_table", "fold_auc_table",
    "fold_records", "folds_of", "interval", "label_draws", "label_efficiency_table", "load_arms", "load_runs",
    "load_spec", "main", "markdown", "mean_sd", "mean_validation_auc", "member_run", "metric_text", "metrics_table",
    "paired_table", "provenance", "read_json", "read_part", "read_predictions", "recipe", "render_document",
    "run_tables", "stale_documents", "verdict", "write",
]
