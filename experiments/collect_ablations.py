"""Table of the ablation runs: the last monitor values (k-NN and linear-probe AUC) of each pretraining run.

    python experiments/collect_ablations.py --runs runs/ablation --output experiments/results/ablations.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CONFIG_FIELDS = ("num_positives", "num_negatives", "margin", "num_hard_positives", "num_hard_negatives", "store_paths")


def last_monitor(history: list[dict]) -> dict:
    """The last record of a history that holds monitor values."""
    records = [record for record in history if "probe_auc" in record]
    if not records:
        raise ValueError("no monitor record in history.json")
    return records[-1]


def table(runs_dir: Path) -> str:
    """One row per run folder with a history.json."""
    headers = ["run", *CONFIG_FIELDS, "steps", "final loss", "k-NN AUC", "probe AUC"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for folder in sorted(path.parent for path in runs_dir.glob("*/history.json")):
        history = json.loads((folder / "history.json").read_text())
        config = json.loads((folder / "pretrain_config.json").read_text())
        monitor = last_monitor(history)
        losses = [record["loss"] for record in history if "loss" in record]
        stores = ", ".join(Path(path).name for path in config["store_paths"])
        values = [config[field] if field != "store_paths" else stores for field in CONFIG_FIELDS]
        lines.append("| " + " | ".join(map(str, [folder.name, *values, monitor["step"], f"{losses[-1]:.3f}",
                                                  f"{monitor['knn_auc']:.3f}", f"{monitor['probe_auc']:.3f}"])) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="folder holding one pretraining output per run")
    parser.add_argument("--output", type=Path, required=True, help="Markdown file to write")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table(args.runs))
    print(f"Ablation table written to {args.output}")


if __name__ == "__main__":
    main()
