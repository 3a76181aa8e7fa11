"""Convergence of pretraining losses: the k-NN / linear-probe monitor against pretraining steps, one line per run.

    python experiments/plot_convergence.py --run "hard triplet=runs/pretrain_lung_hard_triplet" \
        --run "InfoNCE=runs/pretrain_lung_info_nce" --output docs/figures/convergence.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MONITORS = (("probe_auc", "linear-probe AUC"), ("knn_auc", "k-NN AUC"))


def monitor_curve(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of one monitor from a pretraining `history.json`."""
    points = [(record["step"], record[key]) for record in history if key in record]
    return [step for step, _ in points], [value for _, value in points]


def main(argv: list[str] | None = None) -> None:
    """Plot every run's monitors (and training loss) against steps."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=PRETRAIN_OUTPUT_DIR (with history.json)")
    parser.add_argument("--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    figure, axes = plt.subplots(1, len(MONITORS), figsize=(5 * len(MONITORS), 4), sharey=True)
    for text in args.run:
        name, _, folder = text.partition("=")
        history = json.loads((Path(folder) / "history.json").read_text())
        for axis, (key, label) in zip(axes, MONITORS):
            steps, values = monitor_curve(history, key)
            axis.plot(steps, values, marker="o", label=name)
            axis.set_title(label)
            axis.set_xlabel("pretraining step")
    axes[0].set_ylabel("monitor AUC (BUS-BRA fold-1 train side)")
    for axis in axes:
        axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=120)
    print(f"Convergence plot written to {args.output}")


if __name__ == "__main__":
    main()
