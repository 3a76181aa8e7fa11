"""Pool the test predictions of fine-tuning runs that each covered some folds into one set of metrics.

`experiments/gpu/run_folds_parallel.sh` splits one cross-validation arm over parallel processes; each writes its
own `predictions.csv` (one row per test image: patient, fold, label, calibrated and uncalibrated P(malignant), the
fold's threshold) and `results.json`. This concatenates the parts' predictions and computes the same pooled metrics
`training.finetune` computes for a single run (patient-bootstrap CIs with the run's seed, bootstrap samples and ECE
bins), plus each fold's test and validation AUC. No fold may appear twice.

`--results-json` also writes one results.json in `training.finetune`'s format for the whole arm (what
`training.export` renders a model card from): the parts' folds, the pooled metrics, mean ± std over folds, each
part's command (as `python -m ...`), commit and wall time, and the final model of the one part that trained it.
The parts must share their recipe (every config field except folds, output_dir and final_model). With
`--final-run`, the final model is the one that run trained after the parts (`training.finetune --final-from`, same
recipe, no cross-validation): its path, threshold, temperature and epochs, and its command, commit and wall time.

    python experiments/pool_predictions.py RUN_PART0 RUN_PART1 ... --output pooled.json [--results-json results.json]
        [--final-run FINAL_RUN]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments import report
from training import evaluation
from training.finetune.outputs import SELECTION, mean_std

CLASSES = ["benign", "malignant"]  # class names of results files from before `class_names` was recorded
PART_FIELDS = ("folds", "output_dir", "final_model")  # config fields that may differ between parts of one arm
# ... and between them and a `--final-from` run (which validates and tests nothing: no segmenter boxes, no inner
# splits to seed; its holdout follows `seed`)
FINAL_RUN_FIELDS = (*PART_FIELDS, "final_from", "eval_boxes", "split_seed")


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


def check_same_recipe(configs: list[dict], free: tuple[str, ...] = PART_FIELDS) -> None:
    """Raise ValueError naming the first config field (other than `free`) on which two parts differ."""
    for name in sorted(set().union(*configs) - set(free)):
        values = [config.get(name) for config in configs]
        if any(value != values[0] for value in values):
            raise ValueError(f"the parts differ in {name!r} ({values}): not one arm")


def module_command(command: str) -> str:
    """A command recorded as `PATH/training/X/__main__.py ARGS` (before `provenance.run_command`) in the form
    `python -m training.X ARGS` that it meant, so no path of the machine that ran it reaches a card."""
    program, _, arguments = command.partition(" ")
    parts = Path(program).parts
    if parts and parts[-1] == "__main__.py" and "training" in parts:
        module = ".".join(parts[parts.index("training"):-1])
        return f"python -m {module} {arguments}".strip()
    return command


def check_choices(choices: list[dict] | None) -> list[dict]:
    """Choices declared in a file, each with the fields the model card's table shows (ValueError otherwise)."""
    for choice in choices or []:
        missing = {"choice", "data", "criterion", "validation_only"} - set(choice)
        if missing:
            raise ValueError(f"choice {choice.get('choice', choice)!r} lacks {sorted(missing)}")
    return list(choices or [])


def merged_results(folders: list[Path], extra_choices: list[dict] | None = None) -> dict:
    """One finetune-format results.json for an arm split over `folders` (at most one of them trained the final
    model; its threshold is the median over its own folds' thresholds). `extra_choices`: choices made outside the
    runs (fixed in advance, or by licence), each with `choice`, `data`, `criterion` and `validation_only`."""
    results = [report.read_part(folder)[1] for folder in folders]
    check_same_recipe([part["config"] for part in results])
    finals = [part for part in results if (part.get("final_model") or {}).get("path")]
    if len(finals) > 1:
        raise ValueError(f"{len(finals)} parts trained a final model; at most one may")
    pooled = pool(folders)
    folds = sorted((fold for part in results for fold in part["folds"]), key=lambda fold: fold["fold"])
    merged = dict(finals[0] if finals else results[0])
    if not finals:  # an arm without a final model: the threshold it would take, as training.finetune records it
        merged["final_model"] = {"path": None, "threshold": float(np.median([fold["threshold"] for fold in folds])),
                                 "temperature": 1.0, "calibration_bias": 0.0}
    merged.update(
        command=" ; ".join(module_command(part["command"]) for part in results),
        commit=" + ".join(dict.fromkeys(part["commit"] for part in results)),
        wall_time_s=float(sum(part["wall_time_s"] for part in results)),
        parts=[{"folder": str(folder), "folds": [fold["fold"] for fold in part["folds"]],
                "command": module_command(part["command"]), "commit": part["commit"],
                "wall_time_s": part["wall_time_s"]} for folder, part in zip(folders, results)],
        folds=folds, pooled=pooled["pooled"], mean_std=mean_std(folds), mean_val_auc=pooled["mean_val_auc"],
        selection=[*merged.get("selection", SELECTION)],
        choices=[*(choice for part in results for choice in part.get("choices", [])), *check_choices(extra_choices)],
        figures={},
    )
    merged["config"] = {**merged["config"], "folds": [fold["fold"] for fold in folds]}
    return merged


def with_final_run(merged: dict, final_run: Path) -> dict:
    """The arm's results with the final model of a `training.finetune --final-from` run on its parts' folds."""
    final = report.read_json(final_run / "results.json")
    if "final_from" not in final or not (final.get("final_model") or {}).get("path"):
        raise ValueError(f"{final_run}: not a --final-from run with a final model")
    if final["final_from"]["folds"] != merged["config"]["folds"]:
        raise ValueError(f"{final_run}: its final model took the choices of folds {final['final_from']['folds']}, "
                         f"not this arm's {merged['config']['folds']}")
    check_same_recipe([merged["config"], final["config"]], FINAL_RUN_FIELDS)
    run = {"folder": str(final_run), "command": module_command(final["command"]), "commit": final["commit"],
           "wall_time_s": final["wall_time_s"]}
    return {**merged, "final_model": final["final_model"], "final_run": run}


def write_figures(folders: list[Path], output_dir: Path, class_names: list[str], seed: int, n_bins: int
                  ) -> dict[str, str]:
    """ROC (per fold and pooled), reliability (before / after scaling) and confusion plots of the parts' pooled
    predictions, as `training.finetune` draws them for one run; returns `{figure: file name}`."""
    frame = pd.concat([report.read_part(folder)[0] for folder in folders], ignore_index=True)
    labels, calibrated = frame["label"].to_numpy(), frame["prob_malignant"].to_numpy()
    curves = {f"fold {fold}": (rows["label"].to_numpy(), rows["prob_malignant"].to_numpy(),
                               rows["patient_id"].to_numpy()) for fold, rows in frame.groupby("fold")}
    curves["pooled"] = (labels, calibrated, frame["patient_id"].to_numpy())
    evaluation.plot_roc(curves, output_dir / "roc.png", seed=seed)
    evaluation.plot_reliability({"before scaling": (labels, frame["prob_uncalibrated"].to_numpy()),
                                 "after scaling": (labels, calibrated)}, output_dir / "reliability.png", n_bins=n_bins)
    evaluation.plot_confusion(labels, calibrated, frame["threshold"].to_numpy(), output_dir / "confusion.png",
                              class_names)
    return {"roc": "roc.png", "reliability": "reliability.png", "confusion": "confusion.png"}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="+", type=Path, help="fine-tuning output folders, one per part")
    parser.add_argument("--output", type=Path, required=True, help="JSON file for the pooled metrics")
    parser.add_argument("--results-json", type=Path, help="also write one finetune-format results.json here")
    parser.add_argument("--choices", nargs="+", type=Path, default=[],
                        help="YAML lists of choices made outside the runs, in order (for --results-json)")
    parser.add_argument("--final-run", type=Path,
                        help="a `training.finetune --final-from` run on these parts: its final model (--results-json)")
    args = parser.parse_args(argv)
    pooled = pool(args.parts)
    args.output.write_text(json.dumps(pooled, indent=2))
    if args.results_json:
        extra = [choice for path in args.choices for choice in yaml.safe_load(path.read_text()) or []]
        merged = merged_results(args.parts, extra)
        if args.final_run:
            merged = with_final_run(merged, args.final_run)
        config = merged["config"]
        merged["figures"] = write_figures(args.parts, args.results_json.parent, merged.get("class_names", CLASSES),
                                          config["seed"], config["ece_bins"])
        args.results_json.write_text(json.dumps(merged, indent=2))
        print(f"arm results (finetune format) in {args.results_json}")
    for name, metric in pooled["pooled"].items():
        print(f"{name}: {metric['value']:.3f} [{metric['ci_low']:.3f}, {metric['ci_high']:.3f}]")
    print(f"folds {[fold['fold'] for fold in pooled['folds']]}, mean validation AUC {pooled['mean_val_auc']:.3f}; "
          f"{pooled['n_test']} test images pooled into {args.output}")


if __name__ == "__main__":
    main()
