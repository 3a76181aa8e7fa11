"""Choose among fine-tuning runs by their mean inner-validation AUC (never the test folds).

Each run's `results.json` holds, per fold, the validation AUC of its best epoch (`folds[*].val_auc`), measured on
patients held out of that fold's training side. The run with the highest mean over the folds that every run
finished (a run stopped early gives its `folds_done.json`) is chosen; ties go to the first run given. Prints the
chosen run's folder on the last line (for shell scripts) and writes the comparison as JSON. With `--choice NAME`
the choice is also recorded in the chosen run's results file, the one given (`choices`: what was chosen, among
which runs, on which data, by which criterion), from where the model card's "How each choice was made" table is
rendered. A pooled arm (`experiments/pool_predictions.py --results-json arm_results.json`) is a candidate too.

    python experiments/choose_by_validation.py RUN_A/results.json RUN_B/results.json --output choice.json \
        [--choice "learning rate"]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def validation_aucs(results_path: Path) -> dict[int, float]:
    """Fold -> best-epoch validation AUC from one `results.json`, or from the `folds_done.json` (a list of folds)
    of a run stopped before its end."""
    payload = json.loads(results_path.read_text())
    folds = payload if isinstance(payload, list) else payload["folds"]
    if not folds:
        raise ValueError(f"{results_path}: no folds were finished, nothing to choose by.")
    return {int(fold["fold"]): float(fold["val_auc"]) for fold in folds}


def mean_validation_auc(results_path: Path) -> float:
    """Mean of the folds' best-epoch validation AUCs in one `results.json` (or `folds_done.json`)."""
    return float(np.mean(list(validation_aucs(results_path).values())))


CRITERION = "mean inner-validation AUC over the folds every candidate finished"
VALIDATION_DATA = "the inner validation split of each fold (patients held out of its training side; no test fold)"


def choose(results_paths: list[Path]) -> dict:
    """The comparison (run folder -> mean validation AUC over the folds every run finished) and the chosen run."""
    per_run = {str(path.parent): validation_aucs(path) for path in results_paths}
    common = sorted(set.intersection(*(set(aucs) for aucs in per_run.values())))
    if not common:
        raise ValueError(f"the runs {sorted(per_run)} share no finished fold: nothing to compare them on.")
    scores = {run: float(np.mean([aucs[fold] for fold in common])) for run, aucs in per_run.items()}
    chosen = max(scores, key=scores.get)
    files = {str(path.parent): str(path) for path in results_paths}
    return {"criterion": CRITERION, "folds": common, "mean_val_auc": scores, "chosen": chosen, "results_files": files}


def record_choice(choice: dict, name: str) -> Path | None:
    """Add the choice to the chosen run's results file `choices` (the file it was compared by, e.g. an arm's pooled
    `arm_results.json`, else its folder's results.json; replacing an earlier choice of the same name); None when
    that file does not exist or is a `folds_done.json` (a run stopped before its end)."""
    path = Path(choice.get("results_files", {}).get(choice["chosen"], Path(choice["chosen"]) / "results.json"))
    if path.name == "folds_done.json":
        path = path.parent / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    entry = {"choice": name, "data": VALIDATION_DATA, "criterion": CRITERION, "validation_only": True,
             "candidates": {Path(run).name: round(score, 4) for run, score in choice["mean_val_auc"].items()}}
    results["choices"] = [*(item for item in results.get("choices", []) if item["choice"] != name), entry]
    path.write_text(json.dumps(results, indent=2))
    return path


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json of each candidate run")
    parser.add_argument("--output", type=Path, required=True, help="JSON file for the comparison")
    parser.add_argument("--choice", help="name of the choice to record in the chosen run's results.json")
    args = parser.parse_args(argv)
    choice = choose(args.results)
    args.output.write_text(json.dumps(choice, indent=2))
    if args.choice:
        print(f"Choice recorded in {record_choice(choice, args.choice) or 'no results.json (run stopped early)'}")
    for run, score in choice["mean_val_auc"].items():
        print(f"{run}: mean validation AUC {score:.3f}")
    print(f"Comparison written to {args.output}; chosen:")
    print(choice["chosen"])


if __name__ == "__main__":
    main()
