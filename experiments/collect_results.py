"""Tables of fresh fine-tuning runs (not yet committed): the tables of `experiments.report`, for runs given on the
command line. Pooled metrics with CIs, test AUC per fold, and each run's paired AUC difference to the first run.

    python experiments/collect_results.py --run "random init=runs/ft_random" \
        --run "hard triplet (lung clips)=runs/ft_lung_ht" --output runs/main_table.md

A run stopped before its last fold has no predictions.csv and is refused (its folds_done.json holds fold AUCs
only, which no paired comparison can use). To report runs in the documents, commit their folders under
experiments/results/ and declare them in experiments/report.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments import report

PAPER_ROWS = (
    ("paper: ImageNet-pretrained DenseNet121", "about 0.76"),
    ("paper: hard triplet pretraining on 1,360 breast clips, 400 labeled images", "0.952"),
    ("paper: hard triplet pretraining, fewer than 100 labeled images", "0.901"),
)


def parse_run(text: str, index: int) -> report.Arm:
    """`NAME=RUN_DIR` -> an arm of that folder's runs."""
    name, _, folder = text.partition("=")
    if not folder:
        raise SystemExit(f"--run {text!r}: expected NAME=RUN_DIR")
    return report.Arm(f"run{index}", name, report.load_runs(Path(folder)))


def render(arms: list[report.Arm]) -> str:
    """Metrics, per-fold AUCs, paired differences to the first run, and the paper's numbers, as Markdown."""
    stats = report.Statistics({arm.name: arm for arm in arms})
    names = [arm.name for arm in arms]
    text = report.metrics_table({"arms": names}, stats) + "\n" + report.fold_auc_table({"arms": names}, stats)
    if len(arms) > 1:
        text += "\n" + report.paired_table({"arms": names[1:], "reference": names[0]}, stats)
    rows = [list(row) for row in PAPER_ROWS]
    return text + "\n" + report.markdown(["the paper (private data, arXiv 2408.10600)", "AUC"], rows)


def main(argv: list[str] | None = None) -> None:
    """Write the Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR of a training.finetune output")
    parser.add_argument("--output", type=Path, required=True, help="Markdown file to write")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render([parse_run(text, index) for index, text in enumerate(args.run)]))
    print(f"Tables written to {args.output}")


if __name__ == "__main__":
    main()
