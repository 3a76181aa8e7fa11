"""Calibrate a model for your site: refit its decision on a few dozen of your own labelled images.

    python -m training.calibrate_site --model MODEL --labels LABELS --output OUTPUT [--overwrite]

LABELS: a CSV with columns `image,label` (label benign or malignant; image paths relative to the CSV's folder; an
optional `patient` column keeps a patient's images together in the cross-validation; clips are analysed as
`predict_clip` analyses them), or a folder with `benign/` and `malignant/` sub-folders. The images run through the
model exactly as the demo runs them (all its views, the lesion step, the clip aggregation); the temperature and
bias of each view and the decision threshold are fitted on them by the rules of training; OUTPUT is a model folder
(weights unchanged) that the demo, the pipelines and `from_pretrained` load with the new calibration, its lesion
and crop companions inside it. What to expect is estimated by cross-validation within the site's images (never on
an image the calibration was fitted on): a table on the terminal, in `OUTPUT/site_calibration.json` and in the card.
Bad input (fewer than 20 images of a class, missing or unreadable files, unknown labels, images the model refuses)
stops it with a message naming the files, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

import usvcl_hf
from training.calibrate_site.crossval import DEFAULT_BOOTSTRAP, DEFAULT_FOLDS, crossvalidate, report_table
from training.calibrate_site.fitting import (
    Calibration,
    fit_site_calibration,
    model_aggregation,
    model_calibration,
)
from training.calibrate_site.folder import write_output
from training.calibrate_site.inputs import EXIT_BAD_INPUT, LABELS, SiteInputError, SiteItem, read_labels
from training.calibrate_site.scoring import ItemScores, load_site_models, score_items
from training.logs import setup_logging
from training.provenance import git_commit, run_command

LOGGER = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m training.calibrate_site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder (as `python app.py --model` takes)")
    parser.add_argument("--labels", type=Path, required=True,
                        help="CSV `image,label[,patient]` or a folder with benign/ and malignant/")
    parser.add_argument("--output", type=Path, required=True, help="site-calibrated model folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS, help="cross-validation folds of the report")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="patient-bootstrap samples (CIs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and the bootstrap")
    return parser


def check_output(output: Path, model: Path, overwrite: bool) -> None:
    """Refuse an existing OUTPUT without `--overwrite`, and OUTPUT at the model's own folder."""
    if output.exists() and output.resolve() == model.resolve():
        raise SiteInputError(f"{output}: is the model folder itself; write the site-calibrated model elsewhere.")
    if output.exists() and not overwrite:
        raise SiteInputError(f"{output}: exists; pass --overwrite to replace it.")


def site_record(items: list[SiteItem], scores: list[ItemScores], old: Calibration, new: Calibration,
                folds: int) -> dict[str, Any]:
    """The config's `site_calibration` field: images per class it was fitted on, date, and what changed."""
    answered = [item for item, item_scores in zip(items, scores) if item_scores.answered]
    return {
        LABELS[0]: sum(item.label == 0 for item in answered), LABELS[1]: sum(item.label == 1 for item in answered),
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "no_lesion": len(items) - len(answered), "views": list(new.views), "folds": folds,
        "threshold": new.threshold, "previous_threshold": old.threshold,
        "calibration": {view: {"temperature": t, "bias": b} for view, (t, b) in new.views.items()},
        "previous_calibration": {view: {"temperature": t, "bias": b} for view, (t, b) in old.views.items()},
        "command": run_command("training.calibrate_site"), "commit": git_commit(),
    }


def calibrate(args: argparse.Namespace) -> tuple[Path, dict[str, Any], str]:
    """Read, score, fit, cross-validate and write; returns the folder, its record and the report table."""
    check_output(args.output, args.model, args.overwrite)
    items = read_labels(args.labels)
    models = load_site_models(args.model)
    scores = score_items(models, items)
    labels, groups = np.array([item.label for item in items]), np.array([item.group for item in items])
    if not any(item.answered for item, label in zip(scores, labels) if label == 0) or not any(
            item.answered for item, label in zip(scores, labels) if label == 1):
        raise SiteInputError(f"{args.labels}: the lesion step found no lesion in any image of one class.")
    aggregation, old = model_aggregation(models), model_calibration(models)
    new = fit_site_calibration(scores, labels, aggregation)
    report = crossvalidate(scores, labels, groups, old, aggregation, args.folds, args.seed, args.bootstrap)
    record, table = site_record(items, scores, old, new, args.folds), report_table(report)
    return write_output(args.output, models.folders, new, record, report, table), record, table


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input, nothing written)."""
    args = build_parser().parse_args(argv)
    setup_logging()
    usvcl_hf.register_auto_classes()
    try:
        output, record, table = calibrate(args)
    except SiteInputError as error:
        print(f"calibrate_site: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    views = " + ".join(record["views"])
    print(f"Site calibration of {args.model} ({views}) on {record['benign']} benign / {record['malignant']} "
          f"malignant images ({record['no_lesion']} answered \"no lesion\", left out), {record['date']}:")
    for view, values in record["calibration"].items():
        print(f"  {view}: temperature {values['temperature']:.3f}, bias {values['bias']:+.3f}")
    print(f"  threshold {record['previous_threshold']:.3f} -> {record['threshold']:.3f}\n")
    print(f"Expected on this site ({record['folds']}-fold cross-validation within its images; 95% patient-bootstrap "
          f"CIs):\n\n{table}\nWritten: {output} (python app.py --model {output})")
    return 0
