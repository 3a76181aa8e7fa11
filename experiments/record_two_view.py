"""Record the two-view choice in the shipped models' results files, from where their model cards are rendered.

The choice is an `ensembles` table of `experiments/report.yaml` (candidates: one whole-image classifier, several
seeds of it, a lesion-crop classifier, a whole-image + lesion-crop pair; chosen by mean inner-validation AUC of the
members' mean calibrated score, never a test fold). When the table chooses the candidate `--chosen` (the two views),
each results file gets a `choices` entry (which data, which criterion, every candidate's validation AUC) and a
`two_view` block with the table's rows (the test numbers read after the choice), its role (whole image or lesion
crop) and its partner models. Refuses when the table chose another candidate.

    python -m experiments.record_two_view --table two-views --chosen two_view \
        --whole experiments/shipped_models/results/whole_image_15_epochs/seed42/arm_results.json \
                models/usvcl-lite0-busbra/results.json \
        --crop experiments/views/results/crop_15_epochs/seed42/arm_results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from experiments import report

# the three models as the cards name them (Hub ids; the same names under models/ locally)
WHOLE_MODEL, CROP_MODEL = "usvcl/usvcl-lite0-busbra", "usvcl/usvcl-lite0-crops-busbra"
LESION_MODEL = "usvcl/usvcl-lesion-busbra"
ROLES = {"whole": ("whole image", CROP_MODEL), "crop": ("lesion crop", WHOLE_MODEL)}  # role -> (view, partner)
CHOICE = "two views in the demo and predict_clip: whole image + lesion crop, mean calibrated P(malignant)"
DATA = ("the inner validation split of each fold (val_predictions.csv of every member: patients held out of its "
        "training side; no test fold)")
CRITERION = ("mean over folds of the inner-validation AUC of the members' mean calibrated score; candidates of at "
             "most two classifiers (each model <= 20 MB; the lesion segmenter already runs for the lesion gate)")


def comparison(spec_path: Path, table: str, root: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The table's spec and rows (`experiments.report.ensemble_comparison`) from the committed runs."""
    spec = report.load_spec(root / spec_path)
    if spec["tables"].get(table, {}).get("kind") != "ensembles":
        raise ValueError(f"{spec_path}: no ensembles table {table!r}")
    stats = report.Statistics(report.load_arms(spec, root))
    return spec["tables"][table], report.ensemble_comparison(spec["tables"][table], stats)


def record(path: Path, role: str, table: str, spec: dict[str, Any], rows: list[dict[str, str]]) -> None:
    """Write the choice and the `two_view` block into one results file (replacing earlier ones)."""
    view, partner = ROLES[role]
    results = json.loads(path.read_text())
    candidates = {row["candidate"]: float(row["validation"]) for row in rows if row["choice"] != "not a candidate"}
    entry = {"choice": CHOICE, "data": DATA, "criterion": CRITERION, "validation_only": True, "candidates": candidates}
    results["choices"] = [*(item for item in results.get("choices", []) if item["choice"] != CHOICE), entry]
    results["two_view"] = {
        "view": view, "partner": partner, "lesion_model": LESION_MODEL,
        "reference": spec["candidates"][spec["reference"]]["label"],
        "source": f"table `{table}` of experiments/report.yaml, in docs/results.md",
        "rows": [{key: row[key] for key in report.ENSEMBLE_HEADERS} for row in rows],
    }
    path.write_text(json.dumps(results, indent=2))


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="the ensembles table of the spec that makes the choice")
    parser.add_argument("--chosen", required=True, help="the candidate (its key in the table) that must be chosen")
    parser.add_argument("--whole", nargs="+", type=Path, default=[], help="results files of the whole-image model")
    parser.add_argument("--crop", nargs="+", type=Path, default=[], help="results files of the lesion-crop model")
    parser.add_argument("--spec", type=Path, default=report.DEFAULT_SPEC, help="the report spec (YAML)")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root the spec's paths start from")
    args = parser.parse_args(argv)
    spec, rows = comparison(args.spec, args.table, args.root)
    chosen = next(row["name"] for row in rows if row["choice"] == "**chosen**")
    if chosen != args.chosen:
        raise SystemExit(f"table {args.table} chose {chosen!r} on validation, not {args.chosen!r}: nothing recorded")
    for role, paths in (("whole", args.whole), ("crop", args.crop)):
        for path in paths:
            record(path, role, args.table, spec, rows)
            print(f"two-view choice recorded in {path}")
    for row in rows:
        print(f"{row['candidate']}: validation {row['validation']} {row['choice']}")


if __name__ == "__main__":
    main()
