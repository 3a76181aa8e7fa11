"""Pool the test predictions of fine-tuning runs that each covered some folds into one set of metrics.

`experiments/gpu/run_folds_parallel.sh` splits one cross-validation arm over parallel processes; each writes its
own `predictions.csv` (one row per test image: patient, fold, label, calibrated and uncalibrated P(malignant), the
fold's threshold) and `results.json`. This concatenates the parts' predictions and computes the same pooled metrics
`training.finetune` computes for a single run (patient-bootstrap CIs with the run's seed, bootstrap samples and ECE
bins), plus each fold's test and validation AUC. No fold may appear twice.

    python experiments/pool_predictions.py RUN_PART0 RUN_PART1 ... --output pooled.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments import report
from training import evaluation


def pool(folders: list[Path]) -> dict:
    """Pooled metrics over all parts' test predictions, and the per-fold AUCs."""
    parts = [report.read_part(folder) for folder in folders]
    predictions = pd.concat([frame for frame, _ in parts], ignore_index=True)
    folds = sorted((fold for _, results in parts for fold in results["folds"]), key=lambda fold: fold["fold"])
    numbers = [fold["fold"] for fold in folds]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"a fold appears in more than one part: {numbers}")
    config = parts[0][1]["config"]
    pooled = evaluation.metrics_with_ci(
        predictions["label"].to_numpy(), predictions["prob_malignant"].to_numpy(),
        predictions["prob_uncalibrated"].to_numpy(), predictions["patient_id"].to_numpy(),
        predictions["threshold"].to_numpy(), n_boot=config["bootstrap_samples"], seed=config["seed"],
        n_bins=config["ece_bins"],
    )
    return {
        "parts": [str(folder) for folder in folders],
        "n_test": len(predictions),
        "folds": [{"fold": fold["fold"], "test_auc": fold["metrics"]["auc"]["value"], "val_auc": fold["val_auc"]}
                  for fold in folds],
        "mean_val_auc": float(np.mean([fold["val_auc"] for fold in folds])),
        "pooled": pooled,
    }


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="+", type=Path, help="fine-tuning output folders, one per part")
    parser.add_argument("--output", type=Path, required=True, help="JSON file for the pooled metrics")
    args = parser.parse_args(argv)
    pooled = pool(args.parts)
    args.output.write_text(json.dumps(pooled, indent=2))
    for name, metric in pooled["pooled"].items():
        print(f"{name}: {metric['value']:.3f} [{metric['ci_low']:.3f}, {metric['ci_high']:.3f}]")
    print(f"folds {[fold['fold'] for fold in pooled['folds']]}, mean validation AUC {pooled['mean_val_auc']:.3f}; "
          f"{pooled['n_test']} test images pooled into {args.output}")


if __name__ == "__main__":
    main()
