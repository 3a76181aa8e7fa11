"""Write an exported classifier folder again with the current code and decision rule, re-using its weights.

For a folder exported before a change of the model code or config (e.g. `threshold_in_logits`, the decision
threshold folded into the logits so that every door gives the same label), when the float32 fine-tuning output is
gone. The half-precision weights load as float32 and are stored again in the same precision, so they are
unchanged bit for bit; the code files, `config.json` and `export_check.json` (recorded again from the loaded
model) are new; the card, results and plots are kept.

    python -m training.refresh_export --folder models/usvcl-lite0-busbra
    python -m training.refresh_export --folder models/usvcl-lite0-busbra \
        --two-view-models usvcl/usvcl-lesion-busbra usvcl/usvcl-lite0-crops-busbra

`--two-view-models LESION CROP` also names the two-view companions (Hub ids; `set_two_views`), so that
`pipeline(model=folder, trust_remote_code=True)` answers with two views (`usvcl_hf/pipeline_usvcl.py`, copied in
with the code it imports).

Other commands change a folder the same way through `rewrite_classifier_folder` (e.g. `training.ood` adds the
out-of-distribution statistics). To copy only the code files (nothing else rewritten): `training.refresh_code`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import usvcl_hf
from training.atomic import atomic_folder
from training.cli_inputs import require_inputs
from training.export import (
    CHECK_FILE,
    EXPORT_DTYPES,
    MAX_WEIGHTS_MB,
    WEIGHTS_FILE,
    ExportError,
    finish_folder,
    load_processor,
    read_json,
    save_model,
    set_decision_rule,
    set_two_views,
    write_check,
)
from training.logs import setup_logging
from training.refresh_code import refresh_code
from usvcl_hf import UsvclForImageClassification

LOGGER = logging.getLogger(__name__)
REWRITTEN_SUFFIXES = (".py",)  # the Hub code files: save_pretrained copies the current ones
REWRITTEN_NAMES = ("config.json", WEIGHTS_FILE, CHECK_FILE, "preprocessor_config.json")
SHIFT_KEY = "max_probability_shift_from_float32"  # measured at the first export, against the float32 weights


def fold_threshold(model: UsvclForImageClassification) -> None:
    """The decision rule of `training.export` (threshold as a logit offset) with the folder's own T and threshold."""
    set_decision_rule(model.config, model.config.calibration_temperature, model.config.decision_threshold,
                      model.config.calibration_bias)


def kept_files(folder: Path) -> list[Path]:
    """Files of an exported folder that a rewrite copies unchanged (card, results, plots)."""
    return [
        path for path in sorted(folder.iterdir())
        if path.is_file() and path.name not in REWRITTEN_NAMES and path.suffix not in REWRITTEN_SUFFIXES
    ]


def rewrite_classifier_folder(
    folder: Path, update: Callable[[UsvclForImageClassification], None], max_mb: float = MAX_WEIGHTS_MB
) -> Path:
    """Load an exported classifier (float32), apply `update`, write the folder again (atomically) and return it.

    The weights are stored in the precision `export_check.json` names; the check is recorded again, keeping the
    half-precision shift measured at the first export.
    """
    for name in (WEIGHTS_FILE, CHECK_FILE, "config.json"):
        if not (folder / name).is_file():
            raise ExportError(f"{folder}: not an exported classifier folder ({name} is missing)")
    old_check = read_json(folder / CHECK_FILE)
    dtype = old_check["weights_dtype"]
    model = UsvclForImageClassification.from_pretrained(folder, dtype=torch.float32).eval()
    update(model)
    processor = load_processor(folder, model.config)
    with atomic_folder(folder) as staging:
        save_model(model, staging, EXPORT_DTYPES[dtype], max_mb)
        processor.save_pretrained(staging)
        write_check(staging, model, processor, "classifier", dtype)
        check = read_json(staging / CHECK_FILE)
        if SHIFT_KEY in old_check:
            check[SHIFT_KEY] = old_check[SHIFT_KEY]
        (staging / CHECK_FILE).write_text(json.dumps(check, indent=2) + "\n")
        for path in kept_files(folder):
            shutil.copyfile(path, staging / path.name)
        refresh_code(staging)  # the modules custom_pipelines names, which save_pretrained does not copy
        finish_folder(staging)
    return folder


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m training.refresh_export",
        description="Write an exported classifier folder again with the current code and decision rule "
        "(threshold folded into the logits), re-using its weights; card, results and plots are kept.",
    )
    parser.add_argument("--folder", type=Path, required=True, help="exported classifier folder, rewritten in place")
    parser.add_argument("--max-size-mb", type=float, default=MAX_WEIGHTS_MB, help="largest allowed weights file")
    parser.add_argument("--two-view-models", nargs=2, metavar=("LESION", "CROP"),
                        help="also name the two-view companions: lesion segmenter and lesion-crop classifier Hub ids")
    return parser


def folder_update(two_view_models: list[str] | None) -> Callable[[UsvclForImageClassification], None]:
    """The decision rule again and, when named, the two-view companions."""
    def update(model: UsvclForImageClassification) -> None:
        fold_threshold(model)
        if two_view_models:
            set_two_views(model.config, *two_view_models)
    return update


def main(argv: list[str] | None = None) -> int:
    """Rewrite the folder; log where it went. Returns the exit code."""
    args = build_parser().parse_args(argv)
    require_inputs("python -m training.refresh_export", {"--folder": args.folder})
    setup_logging()
    usvcl_hf.register_auto_classes()
    try:
        folder = rewrite_classifier_folder(args.folder, folder_update(args.two_view_models), args.max_size_mb)
    except ExportError as error:
        LOGGER.error("refresh failed: %s", error)
        return 1
    LOGGER.info("Rewrote %s with the current code and decision rule (weights re-used)", folder.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
