"""Export bundled folders again from what they record, re-using their weights: `python -m training.export.refresh
models/*/` re-exports every kind (a classifier: decision rule, code, check and card from its results.json; a lesion
segmenter; a backbone: from the classifier `export_check.json` names, beside it) and, on an unchanged checkout,
writes the same bytes (outputs within the check's tolerance keep their recorded digits). `--folder` rewrites one
classifier with the current code and decision rule, keeping its card.

For a folder exported before a change of the model code or config (e.g. `threshold_in_logits`, the decision
threshold folded into the logits so that every door gives the same label), when the float32 fine-tuning output is
gone. The half-precision weights load as float32 and are stored again in the same precision, so they are
unchanged bit for bit; the code files, `config.json` and `export_check.json` (recorded again from the loaded
model) are new; the card, results and plots are kept.

    python -m training.export.refresh models/*/
    python -m training.export.refresh --folder models/usvcl-lite0-busbra
    python -m training.export.refresh --folder models/usvcl-lite0-busbra \
        --two-view-models usvcl/usvcl-lesion-busbra usvcl/usvcl-lite0-crops-busbra

`--two-view-models LESION CROP` also names the two-view companions (Hub ids; `set_two_views`), so that
`pipeline(model=folder, trust_remote_code=True)` answers with two views (`usvcl_hf/pipeline_usvcl.py`, copied in
with the code it imports).

Other commands change a folder the same way through `rewrite_classifier_folder` (e.g. `training.export.ood` adds the
out-of-distribution statistics). To copy only the code files (nothing else rewritten): `training.export.refresh_code`.
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
from huggingface_hub import ModelCard

import usvcl_hf
from training.atomic import atomic_folder
from training.cli_inputs import require_inputs
from training.export import (
    CHECK_FILE,
    EXPORT_DTYPES,
    EXPORT_INPUTS_KEY,
    MAX_WEIGHTS_MB,
    RESULTS_COPY,
    WEIGHTS_FILE,
    ExportError,
    export_backbone,
    export_lesion,
    finish_folder,
    keep_recorded_outputs,
    load_processor,
    read_json,
    recorded_export_inputs,
    rerender_classifier_card,
    save_model,
    set_decision_rule,
    set_two_views,
    write_check,
)
from training.export.refresh_code import refresh_code
from training.logs import setup_logging
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
        for key in (SHIFT_KEY, EXPORT_INPUTS_KEY):
            if key in old_check:
                check[key] = old_check[key]
        (staging / CHECK_FILE).write_text(json.dumps(check, indent=2) + "\n")
        keep_recorded_outputs(staging, old_check)
        for path in kept_files(folder):
            shutil.copyfile(path, staging / path.name)
        refresh_code(staging)  # the modules custom_pipelines names, which save_pretrained does not copy
        finish_folder(staging)
    return folder


def card_repo_id(folder: Path) -> str:
    """The Hub id a folder's card names (its `model_name`), for a folder exported before `export_inputs` existed."""
    return ModelCard.load(folder / "README.md").data.model_name or folder.name


def refresh_classifier(folder: Path, inputs: dict, max_mb: float) -> None:
    """Weights re-used, decision rule and code again, then the card rendered again from the folder's results.json."""
    rewrite_classifier_folder(folder, fold_threshold, max_mb)
    rerender_classifier_card(folder, folder / RESULTS_COPY, None, inputs.get("pretrain_data"), inputs.get("license_id"),
                             inputs.get("code_url"), inputs.get("repo_id") or card_repo_id(folder))


def refresh_backbone(folder: Path, inputs: dict, check: dict, max_mb: float) -> None:
    """The encoder exported again from the classifier folder it came from (`source_model`, beside it)."""
    source = inputs.get("source_model")
    if not source:
        raise ExportError(f"{folder}: {CHECK_FILE} does not name the classifier the encoder came from; export it "
                          "with `python -m training.export --kind backbone --model-dir CLASSIFIER` once.")
    if not (folder.parent / source).is_dir():
        raise ExportError(f"{folder.parent / source}: no such folder (the classifier {folder.name} came from)")
    export_backbone(folder.parent / source, folder, None, inputs.get("pretrain_data"), check["weights_dtype"],
                    max_mb, inputs.get("license_id"), inputs.get("repo_id") or card_repo_id(folder))


def refresh_folder(folder: Path, max_mb: float = MAX_WEIGHTS_MB) -> Path:
    """Export a bundled folder again from what it records (weights, results.json, `export_inputs`): the
    classifier's decision rule and card, the lesion segmenter, or the encoder of its classifier. Outputs within the
    check's tolerance of the recorded ones keep their recorded digits, so an unchanged folder stays byte-equal."""
    check = read_json(folder / CHECK_FILE)
    inputs = recorded_export_inputs(folder)
    if check["kind"] == "classifier":
        refresh_classifier(folder, inputs, max_mb)
        return folder
    if check["kind"] == "lesion":
        export_lesion(folder, folder / RESULTS_COPY, folder, check["weights_dtype"], max_mb, inputs.get("license_id"),
                      inputs.get("repo_id") or card_repo_id(folder))
    else:
        refresh_backbone(folder, inputs, check, max_mb)
    keep_recorded_outputs(folder, check)
    finish_folder(folder)
    return folder


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m training.export.refresh",
        description="Write an exported classifier folder again with the current code and decision rule "
        "(threshold folded into the logits), re-using its weights; card, results and plots are kept.",
    )
    parser.add_argument("folders", nargs="*", type=Path,
                        help="exported folders (any kind) to export again from what they record, e.g. models/*/")
    parser.add_argument("--folder", type=Path, help="one exported classifier folder, rewritten in place")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.folders and args.folder is None:
        parser.error("name the folders to export again (e.g. models/*/) or --folder")
    require_inputs("python -m training.export.refresh", {"--folder": args.folder, "FOLDERS": args.folders})
    setup_logging()
    usvcl_hf.register_auto_classes()
    try:
        if args.folder is not None:
            folder = rewrite_classifier_folder(args.folder, folder_update(args.two_view_models), args.max_size_mb)
            LOGGER.info("Rewrote %s with the current code and decision rule (weights re-used)", folder.resolve())
        for folder in args.folders:
            refresh_folder(folder, args.max_size_mb)
            LOGGER.info("Exported %s again from what it records", folder)
    except ExportError as error:
        LOGGER.error("refresh failed: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
