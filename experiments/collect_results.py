"""Collect several fine-tuning `results.json` files into the Markdown tables of docs/results.md.

    python experiments/collect_results.py --run "random init=runs/ft_random" \
        --run "hard triplet (lung clips)=runs/ft_lung_ht" --output experiments/results/main_table.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METRICS = ("auc", "sensitivity", "specificity", "accuracy", "ece_before", "ece_after")
PAPER_ROWS = (
    ("paper: ImageNet-pretrained DenseNet121", "about 0.76"),
    ("paper: hard triplet pretraining on 1,360 breast clips, 400 labeled images", "0.952"),
    ("paper: hard triplet pretraining, fewer than 100 labeled images", "0.901"),
)


def interval(metric: dict) -> str:
    """`value [low, high]` with three decimals."""
    return f"{metric['value']:.3f} [{metric['ci_low']:.3f}, {metric['ci_high']:.3f}]"


def table_row(name: str, results: dict) -> list[str]:
    """One arm: pooled metrics with CIs, the mean ± std of fold AUCs, folds run and wall time.

    A run stopped before its last fold (only `folds_done.json`) gets its fold AUCs and dashes for the pooled metrics.
    """
    folds = [fold["fold"] for fold in results["folds"]]
    fold_aucs = [fold["metrics"]["auc"]["value"] for fold in results["folds"]]
    if results.get("partial"):
        return [name, ",".join(map(str, folds)) + " (stopped)"] + ["—"] * len(METRICS) + [
            f"{statistics.mean(fold_aucs):.3f} ± {statistics.pstdev(fold_aucs):.3f}", "—", results["commit"]]
    auc = results["mean_std"]["auc"]
    return [name, ",".join(map(str, folds))] + [interval(results["pooled"][m]) for m in METRICS] + [
        f"{auc['mean']:.3f} ± {auc['std']:.3f}", f"{results['wall_time_s'] / 60:.1f} min", results["commit"]]


def fold_table(runs: list[tuple[str, dict]]) -> list[str]:
    """Test AUC [95% CI] per fold and arm, so arms run on fewer folds compare on the same ones."""
    numbers = sorted({fold["fold"] for _, results in runs for fold in results["folds"]})
    lines = ["| arm | " + " | ".join(f"fold {k} AUC" for k in numbers) + " |", "|" + "---|" * (len(numbers) + 1)]
    for name, results in runs:
        by_fold = {fold["fold"]: interval(fold["metrics"]["auc"]) for fold in results["folds"]}
        lines.append(f"| {name} | " + " | ".join(by_fold.get(k, "—") for k in numbers) + " |")
    return lines


def render(runs: list[tuple[str, dict]]) -> str:
    """The main table plus the paper's numbers, as Markdown."""
    headers = ["arm", "test folds", "AUC (pooled)", "sensitivity", "specificity", "accuracy", "ECE before",
               "ECE after", "fold AUC mean ± std", "wall time", "commit"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(table_row(name, results)) + " |" for name, results in runs]
    lines += ["", *fold_table(runs)]
    lines += ["", "| the paper (private data, arXiv 2408.10600) | AUC |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in PAPER_ROWS]
    return "\n".join(lines) + "\n"


def parse_run(text: str, commit: str) -> tuple[str, dict]:
    """`name=RUN_DIR` -> (name, that run's results.json, or its folds_done.json marked partial)."""
    name, _, folder = text.partition("=")
    path, partial_path = Path(folder) / "results.json", Path(folder) / "folds_done.json"
    if path.exists():
        return name, json.loads(path.read_text())
    if partial_path.exists():
        return name, {"folds": json.loads(partial_path.read_text()), "partial": True, "commit": commit}
    raise SystemExit(f"{path}: no results.json or folds_done.json (did the fine-tuning run start?)")


def main(argv: list[str] | None = None) -> None:
    """Write the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR of a training.finetune output")
    parser.add_argument("--output", type=Path, required=True, help="Markdown file to write")
    parser.add_argument("--commit", default="unknown", help="commit to name for stopped runs (no results.json)")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render([parse_run(text, args.commit) for text in args.run]))
    print(f"Table written to {args.output}")


if __name__ == "__main__":
    main()
