"""Site calibration on a scanner the model never saw: BUS-BRA's Toshiba Aplio 300 images as "a new site".

    python -m experiments.cross_device.site_calibration --model MODEL --data ../shared/data/bus_bra \
        --output experiments/cross_device/results/site_calibration [--draws 20] [--seed 0]

MODEL was trained without the Toshiba images (`training.finetune --split cross_device`, exported). Every Toshiba
image runs through it once, as the demo runs it (`training.calibrate_site`'s scoring); then, for each of `--draws`
patient-grouped halvings of the Toshiba patients (stratified by label, seeded), the command's own fitting
(`training.calibrate_site.fit_site_calibration`) is fitted on one half and the other half is scored with it and
with the model's own calibration. Writes `draws.csv` (one row per draw and evaluated image: draw, image id,
patient, label, device, OOD score, P(malignant) and threshold of the model's and of the site calibration) and
`scored.csv` (every image once, uncalibrated logit difference of each view); `experiments/device_tables.py`
`site_calibration_table` makes the table from `draws.csv`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from training.atomic import write_json_atomic
from training.calibrate_site import fit_site_calibration, load_site_models, model_aggregation
from training.calibrate_site.fitting import answer_probabilities, model_calibration
from training.calibrate_site.scoring import score_item, uncalibrated
from training.provenance import git_commit, run_command

DEVICE = "Toshiba Aplio 300"  # the `Device` prefix of the "new site"
LABELS = ("benign", "malignant")
EXACT_DIGITS = 17


def site_rows(data: Path, device: str = DEVICE) -> list[dict[str, str]]:
    """BUS-BRA `bus_data.csv` rows of `device`, sorted by image id."""
    with (data / "bus_data.csv").open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Device"].startswith(device)]
    return sorted(rows, key=lambda row: row["ID"])


def score_site(models, data: Path, rows: list[dict[str, str]]) -> tuple[list, list[float]]:
    """Each row's image through the model as the demo runs it (uncalibrated scores) and its OOD score."""
    scores, ood = [], []
    with uncalibrated(models):
        for row in rows:
            item_scores, ood_score, _ = score_item(models, data / "Images" / f"{row['ID']}.png")
            scores.append(item_scores)
            ood.append(ood_score)
    return scores, ood


def halvings(labels: np.ndarray, patients: np.ndarray, draws: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`draws` (fit rows, evaluation rows) pairs: patient-grouped halves stratified by label, seed + draw."""
    pairs = []
    for draw in range(draws):
        splitter = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed + draw)
        pairs.append(next(splitter.split(np.zeros(len(labels)), labels, patients)))
    return pairs


def draw_table(rows, scores, ood, models, draws: int, seed: int) -> list[dict[str, object]]:
    """One record per draw and evaluated image."""
    labels = np.array([LABELS.index(row["Pathology"]) for row in rows])
    patients = np.array([row["Case"] for row in rows])
    aggregation, old = model_aggregation(models), model_calibration(models)
    records = []
    for draw, (fit, held) in enumerate(halvings(labels, patients, draws, seed)):
        site = fit_site_calibration([scores[i] for i in fit], labels[fit], aggregation)
        held_scores = [scores[i] for i in held]
        before = answer_probabilities(held_scores, old, aggregation)
        after = answer_probabilities(held_scores, site, aggregation)
        for position, row_index in enumerate(held):
            row = rows[row_index]
            records.append({
                "draw": draw, "image_id": row["ID"], "patient_id": row["Case"], "label": int(labels[row_index]),
                "device": row["Device"], "ood_score": exact(ood[row_index]), "prob_model": exact(before[position]),
                "threshold_model": exact(old.threshold), "prob_site": exact(after[position]),
                "threshold_site": exact(site.threshold), "fit_images": len(fit)})
    return records


def exact(value: float) -> str:
    """Every digit of a float (it reads back exactly)."""
    return f"{value:.{EXACT_DIGITS}g}"


def write_csv(path: Path, records: list[dict[str, object]]) -> None:
    """Records as a CSV with a header."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def main(argv: list[str] | None = None) -> int:
    """Score, draw, fit, evaluate, write."""
    parser = argparse.ArgumentParser(prog="python -m experiments.cross_device.site_calibration",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="exported model trained without the Toshiba images")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/bus_bra"), help="BUS-BRA folder")
    parser.add_argument("--output", type=Path, required=True, help="folder for draws.csv, scored.csv, run.json")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows, models = site_rows(args.data), load_site_models(args.model)
    scores, ood = score_site(models, args.data, rows)
    args.output.mkdir(parents=True, exist_ok=True)
    write_csv(args.output / "draws.csv", draw_table(rows, scores, ood, models, args.draws, args.seed))
    write_csv(args.output / "scored.csv", [
        {"image_id": row["ID"], "patient_id": row["Case"], "label": LABELS.index(row["Pathology"]),
         "device": row["Device"], "lesion_frames": int(item.lesion_frames.sum()),
         **{f"logit_{view.replace(' ', '_')}": exact(float(values.mean()))
            for view, values in item.views.items()}} for row, item in zip(rows, scores)])
    write_json_atomic(args.output / "run.json", {"command": run_command("experiments.cross_device.site_calibration"),
                                                 "commit": git_commit(), "model": str(args.model),
                                                 "draws": args.draws, "seed": args.seed, "images": len(rows)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
