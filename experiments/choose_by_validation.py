"""Choose among fine-tuning runs by their mean inner-validation AUC (never the test folds).

Each run's `results.json` holds, per fold, the validation AUC of its best epoch (`folds[*].val_auc`), measured on
patients held out of that fold's training side. The run with the highest mean is chosen; ties go to the first run
given. Prints the chosen run's folder on the last line (for shell scripts) and writes the comparison as JSON.

    python experiments/choose_by_validation.py RUN_A/results.json RUN_B/results.json --output choice.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def mean_validation_auc(results_path: Path) -> float:
    """Mean of the folds' best-epoch validation AUCs in one `results.json`."""
    folds = json.loads(results_path.read_text())["folds"]
    if not folds:
        raise ValueError(f"{results_path}: no folds were finished, nothing to choose by.")
    return float(np.mean([fold["val_auc"] for fold in folds]))


def choose(results_paths: list[Path]) -> dict:
    """The comparison (run folder -> mean validation AUC) and the chosen run folder."""
    scores = {str(path.parent): mean_validation_auc(path) for path in results_paths}
    chosen = max(scores, key=scores.get)
    return {"criterion": "mean inner-validation AUC over folds", "mean_val_auc": scores, "chosen": chosen}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json of each candidate run")
    parser.add_argument("--output", type=Path, required=True, help="JSON file for the comparison")
    args = parser.parse_args(argv)
    choice = choose(args.results)
    args.output.write_text(json.dumps(choice, indent=2))
    for run, score in choice["mean_val_auc"].items():
        print(f"{run}: mean validation AUC {score:.3f}")
    print(f"Comparison written to {args.output}; chosen:")
    print(choice["chosen"])


if __name__ == "__main__":
    main()
