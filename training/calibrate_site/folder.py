"""The site-calibrated model folder: the model's files copied (weights unchanged), its config with the site's
calibration and a `site_calibration` record, its companions inside it (`lesion_model/` unchanged, `crop_model/`
recalibrated with it) under the names its config records, `site_calibration.json`, and a card section."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from training.atomic import atomic_folder
from training.calibrate_site.fitting import Calibration
from training.export import CHECK_FILE, set_decision_rule, set_two_views
from training.export.checks import record_outputs
from training.export.refresh_code import refresh_code
from usvcl_hf import UsvclConfig, UsvclForImageClassification, UsvclImageProcessor
from usvcl_hf.runtime.clip_prediction import CROP_VIEW, WHOLE_VIEW

COMPANION_NAMES = {"lesion_model": "lesion_model", "crop_model": "crop_model"}  # role -> sub-folder of OUTPUT
REPORT_FILE = "site_calibration.json"
CARD_FILE = "README.md"
CARD_HEADING = "## Site calibration"


def copy_files(source: Path, target: Path) -> None:
    """The files at the top of `source` (not its sub-folders) copied into `target`, bytes unchanged."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file():
            shutil.copy2(path, target / path.name)


def recalibrate_folder(folder: Path, temperature: float, bias: float, threshold: float, record: dict[str, Any],
                       two_views: bool = False) -> None:
    """A copied classifier folder's config with the new decision rule and the `site_calibration` record (two views:
    its companions named by their sub-folders), its Hub code refreshed, its export check recorded again."""
    config = UsvclConfig.from_pretrained(folder)
    set_decision_rule(config, temperature, threshold, bias)
    config.site_calibration = record
    if two_views:
        set_two_views(config, COMPANION_NAMES["lesion_model"], COMPANION_NAMES["crop_model"])
    config.save_pretrained(folder)
    refresh_code(folder)
    if (folder / CHECK_FILE).is_file():  # the logits recorded at export move with the decision rule
        check = json.loads((folder / CHECK_FILE).read_text())
        model = UsvclForImageClassification.from_pretrained(folder).eval()
        processor = UsvclImageProcessor.from_pretrained(folder)
        check["outputs"] = record_outputs(model, processor, ("logits",))
        (folder / CHECK_FILE).write_text(json.dumps(check, indent=2) + "\n")


def card_section(record: dict[str, Any], table: str) -> str:
    """The card's "Site calibration" section."""
    views = " and ".join(record["views"])
    return (f"{CARD_HEADING}\n\nRecalibrated for a site with `python -m training.calibrate_site` on "
            f"{record['date']}: on {record['benign']} benign and {record['malignant']} malignant images of that site "
            f"({record['no_lesion']} more answered \"no lesion\" were left out). Refitted: the temperature and bias "
            f"of the {views} view(s) (lowest NLL) and the decision threshold (Youden's J), the rules of training; "
            f"weights unchanged. Estimated on the site's images by {record['folds']}-fold cross-validation (no image "
            f"scored by a calibration fitted on it), 95% patient-bootstrap CIs:\n\n{table}")


def write_card(folder: Path, section: str) -> None:
    """The folder's card with `section` in place of any earlier site-calibration section."""
    path = folder / CARD_FILE
    text = path.read_text() if path.is_file() else ""
    text = re.sub(rf"\n*{re.escape(CARD_HEADING)}\n.*?(?=\n## |\Z)", "", text, flags=re.DOTALL)
    path.write_text(text.rstrip("\n") + "\n\n" + section)


def write_output(output: Path, folders: dict[str, Path], calibration: Calibration, record: dict[str, Any],
                 report: dict[str, Any], table: str) -> Path:
    """Write the site-calibrated folder at `output` (atomically: all of it or nothing) and return it."""
    two_views = CROP_VIEW in calibration.views
    with atomic_folder(output) as staging:
        copy_files(folders["model"], staging)
        recalibrate_folder(staging, *calibration.views[WHOLE_VIEW], calibration.view_thresholds[WHOLE_VIEW], record,
                           two_views)
        if two_views:
            copy_files(folders["lesion_model"], staging / COMPANION_NAMES["lesion_model"])
            crop = staging / COMPANION_NAMES["crop_model"]
            copy_files(folders["crop_model"], crop)
            recalibrate_folder(crop, *calibration.views[CROP_VIEW], calibration.view_thresholds[CROP_VIEW], record)
        (staging / REPORT_FILE).write_text(json.dumps({**record, "report": report}, indent=2) + "\n")
        write_card(staging, card_section(record, table))
    return output
