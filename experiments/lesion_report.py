"""The lesion segmenter's results table, rebuilt from a committed `training.lesion.train` run folder.

Every number comes from the run's predictions.csv (per-image Dice, IoU and both presence scores, with the fold's
chosen presence score and threshold); results.json gives only the provenance (command, commit, machine, wall time).
Per fold and pooled: mean Dice and IoU of the test lesion images, presence AUROC / sensitivity / specificity of test
lesion images against their lesion-free crops, and the AUROC of each presence score, with patient-bootstrap 95% CIs.

    python -m experiments.lesion_report experiments/shipped_models/results/lesion_segmenter   # print the table
In `experiments/report.yaml` (then `python -m experiments.report`):
    tables:
      lesion: {document: docs/results.md, kind: lesion, run: shipped_models/results/lesion_segmenter}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.run_folders import run_parts
from training.evaluation import markdown_table
from training.lesion.train import presence_metrics, segmentation_metrics
from usvcl_hf.configuration_lesion import PRESENCE_SCORES

EXPERIMENTS_DIR = Path("experiments")  # run folders in the spec are relative to it
BOOTSTRAP = 1000
SEED = 42
HEADERS = ["fold", "test images", "lesion-free crops", "Dice [95% CI]", "IoU [95% CI]",
           "presence AUROC [95% CI]", "sensitivity", "specificity", "AUROC max_pixel", "AUROC head", "chosen"]


def interval(metric: dict[str, float]) -> str:
    """`0.812 [0.801, 0.823]`."""
    return f"{metric['value']:.3f} [{metric['ci_low']:.3f}, {metric['ci_high']:.3f}]"


def table_row(name: str, rows: pd.DataFrame, seed: int) -> list[str]:
    """One table row from the predictions of some folds' test items."""
    lesion = (rows["kind"] == "lesion").to_numpy()
    patients = rows["patient_id"].astype(str).to_numpy()
    segmentation = segmentation_metrics(rows["dice"].to_numpy()[lesion], rows["iou"].to_numpy()[lesion],
                                        patients[lesion], BOOTSTRAP, seed)
    chosen = np.where(rows["presence_score"] == "head", rows["presence_head"], rows["presence_max_pixel"])
    presence = presence_metrics(lesion, chosen, rows["lesion_threshold"].to_numpy(), patients, BOOTSTRAP, seed)
    by_score = [presence_metrics(lesion, rows[f"presence_{score}"].to_numpy(), 0.5, patients, BOOTSTRAP, seed)["auc"]
                for score in PRESENCE_SCORES]
    scores = sorted(rows["presence_score"].unique())
    return [name, str(int(lesion.sum())), str(int((~lesion).sum())), interval(segmentation["dice"]),
            interval(segmentation["iou"]), interval(presence["auc"]), f"{presence['sensitivity']['value']:.3f}",
            f"{presence['specificity']['value']:.3f}", *(interval(metric) for metric in by_score),
            ", ".join(scores) if len(scores) > 1 else f"{scores[0]} at {rows['lesion_threshold'].iloc[0]:.3f}"]


def provenance(results: dict[str, Any], folds: list[int]) -> str:
    """`Run (folds ...): command; commit; machine; wall time.`, and the final model's choices when it has one."""
    final = results["final_model"]
    text = (f"Run (folds {', '.join(map(str, folds))}): `{results['command']}`; commit {results['commit']}; "
            f"{results['machine']}; wall time {results['wall_time_s']:.0f} s.")
    if final.get("path"):
        text += (f" Final model: {final.get('epochs', '—')} epochs, `{final.get('presence_score', '—')}` at "
                 f"threshold {final.get('lesion_threshold', float('nan')):.3f}.")
    return text


def run_table(folder: Path) -> str:
    """Markdown: a row per fold and a pooled row (over the run's parts), then each part's provenance."""
    parts = run_parts(folder, ("predictions.csv",))
    frames = [pd.read_csv(part / "predictions.csv") for part in parts]
    rows = pd.concat(frames, ignore_index=True)
    table = [table_row(str(fold), part, SEED + int(fold)) for fold, part in rows.groupby("fold", sort=True)]
    table.append(table_row("pooled", rows, SEED))
    lines = [provenance(json.loads((part / "results.json").read_text()), sorted(frame["fold"].unique().tolist()))
             for part, frame in zip(parts, frames)]
    return markdown_table(HEADERS, table) + "\n" + "\n".join(lines) + "\n"


def lesion_table(spec: dict[str, Any], root: Path) -> str:
    """`experiments.report`'s `lesion` table kind: `spec["run"]` is a run folder under experiments/
    (QUESTION/results/...)."""
    return run_table(root / EXPERIMENTS_DIR / spec["run"])


def main(argv: list[str] | None = None) -> int:
    """Print the table of one run folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training.lesion.train output folder (predictions.csv, results.json), "
                                               "or one of its fold folders (folds1-3/ ...)")
    args = parser.parse_args(argv)
    sys.stdout.write(run_table(args.run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
