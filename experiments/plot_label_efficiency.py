"""Label efficiency of several fine-tuning runs in one plot: test AUC against labeled training images.

    python experiments/plot_label_efficiency.py --run "random init=runs/le_random" \
        --run "pretrained=runs/le_pretrained" --output docs/figures/label_efficiency.png

Each RUN is a `training.finetune --num-labels ...` output: `label_efficiency.json` gives the subset sizes (mean ±
sd over draws, 95% CI of the mean resampling draws and patients), and `results.json` adds the "all labels" point
of the same test folds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def curve(folder: Path) -> list[dict]:
    """Points (num_labels, auc_mean, auc_std, ci_low, ci_high), the subsets then all labels."""
    points = [
        {key: row[key] for key in ("num_labels", "auc_mean", "auc_std", "auc_ci_low", "auc_ci_high")}
        for row in json.loads((folder / "label_efficiency.json").read_text())
    ]
    results = json.loads((folder / "results.json").read_text())
    auc = results["pooled"]["auc"]
    mean_train = int(sum(fold["n_train"] for fold in results["folds"]) / len(results["folds"]))
    points.append({"num_labels": mean_train, "auc_mean": auc["value"], "auc_std": 0.0,
                   "auc_ci_low": auc["ci_low"], "auc_ci_high": auc["ci_high"]})
    return points


def main(argv: list[str] | None = None) -> None:
    """Plot, and print a Markdown table of the same numbers."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=FINETUNE_OUTPUT_DIR")
    parser.add_argument("--output", type=Path, required=True, help="PNG to write (a .md table is written beside it)")
    args = parser.parse_args(argv)
    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    table = ["| run | labeled images | AUC mean ± sd over draws | 95% CI of the mean (draws and patients resampled) |",
             "|---|---|---|---|"]
    for text in args.run:
        name, _, folder = text.partition("=")
        points = curve(Path(folder))
        sizes = [p["num_labels"] for p in points]
        axes.errorbar(sizes, [p["auc_mean"] for p in points], yerr=[p["auc_std"] for p in points], marker="o",
                      capsize=4, label=name)
        axes.fill_between(sizes, [p["auc_ci_low"] for p in points], [p["auc_ci_high"] for p in points], alpha=0.12)
        table += [f"| {name} | {p['num_labels']} | {p['auc_mean']:.3f} ± {p['auc_std']:.3f} | "
                  f"[{p['auc_ci_low']:.3f}, {p['auc_ci_high']:.3f}] |" for p in points]
    axes.set_xscale("log")
    axes.set(xlabel="labeled training images (log scale)", ylabel="test AUC (BUS-BRA)", title="Label efficiency")
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=120)
    args.output.with_suffix(".md").write_text("\n".join(table) + "\n")
    print(f"Label-efficiency plot written to {args.output} (table: {args.output.with_suffix('.md')})")


if __name__ == "__main__":
    main()
