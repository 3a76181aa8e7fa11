"""Fit an exported classifier's calibration again, temperature and bias, on its own final-model holdout.

For a folder exported when training fitted a temperature only (`calibration_bias` 0): a class-weighted loss shifts
every logit difference, which a temperature cannot undo, so the calibrated probabilities stay biased towards the
up-weighted class. This scores the final model's patient-grouped holdout (the rows `training.finetune` held out of
its training data to fit its calibration, drawn again from the run's config: `final_split`) with the folder's own
weights in float32 and one forward pass per image, as every door runs them; fits temperature and bias together
(`evaluation.fit_calibration`, lowest NLL); and maps the decision threshold through the old and new calibration, so
that the model's decisions do not change, only its probabilities. The folder is written again
(`training.export.refresh.rewrite_classifier_folder`: weights unchanged bit for bit), its results.json records what
was done, and its card is rendered again.

    python -m training.finetune.recalibrate --folder models/usvcl-lite0-busbra --store-path stores/bus_bra
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import usvcl_hf
from training import evaluation
from training.cli_inputs import require_inputs
from training.common import make_accelerator
from training.config import FinetuneConfig, build_config
from training.export import (
    RESULTS_COPY,
    ExportError,
    load_processor,
    read_json,
    rerender_classifier_card,
    set_decision_rule,
)
from training.export.refresh import rewrite_classifier_folder
from training.finetune.data import LesionCrops, load_labeled_data
from training.finetune.train import evaluate_rows, final_split
from training.logs import setup_logging
from training.provenance import git_commit, run_command
from usvcl_hf import UsvclForImageClassification
from usvcl_hf.runtime.aggregation import logit, sigmoid

LOGGER = logging.getLogger(__name__)
CHOICE = {  # results.json `choices` entry: why temperature and bias (the card lists which data each choice used)
    "choice": "calibration: temperature and bias together (Platt scaling of the logit difference), not a temperature "
              "alone",
    "data": "each fold's inner validation split, cross-fitted: its patients in two halves, each method fitted on one "
            "half and scored on the other (experiments.ensembles.crossfit_calibration; the `calibration` table of "
            "experiments/report.yaml)",
    "criterion": "lower mean NLL over the arms' seeds and folds", "validation_only": True,
}


@dataclasses.dataclass(frozen=True)
class Recalibration:
    """The refitted calibration and what it was fitted on."""

    temperature: float
    bias: float
    threshold: float  # the old threshold mapped through old and new calibration
    previous_temperature: float  # the folder's calibration and threshold before
    previous_threshold: float
    holdout_images: int
    nll_before: float  # holdout NLL with the folder's temperature only
    nll_after: float


def mapped_threshold(threshold: float, old_temperature: float, temperature: float, bias: float) -> float:
    """The threshold on the new calibrated scale that cuts the same logit difference as `threshold` did with
    `old_temperature` alone: `sigmoid(T_old * logit(t) / T + b)`."""
    return float(sigmoid(old_temperature * logit(threshold) / temperature + bias))


def run_config(results: dict[str, Any], store_path: str) -> FinetuneConfig:
    """The fine-tuning config the final model was trained with (results.json `config`), reading `store_path`,
    without flip test-time augmentation: the doors run one forward pass per image, so the calibration is fitted to
    that (training's `tta_flip` averaged the mirror's logits in)."""
    values = {**results["config"], "store_path": store_path, "eval_boxes": None, "num_workers": 0, "tta_flip": False}
    return build_config(FinetuneConfig, values)


def holdout_logits(folder: Path, config: FinetuneConfig) -> tuple[np.ndarray, np.ndarray]:
    """`(n, 2)` uncalibrated float32 logits of the folder's model on its final holdout, and the holdout labels."""
    model = UsvclForImageClassification.from_pretrained(folder, dtype=torch.float32).eval()
    model.config.update({"calibration_temperature": 1.0, "calibration_bias": 0.0, "threshold_in_logits": False})
    crops = LesionCrops(config.crop_margin, None) if config.lesion_crop else None
    data = load_labeled_data(config.store_path, model.config.image_size, model.config.resize_mode, crops=crops)
    _, holdout = final_split(config, data)
    accelerator = make_accelerator("no")  # float32, as every door runs the model
    logits = evaluate_rows(accelerator, config, model, data, load_processor(folder, model.config), holdout)
    return logits, data.labels[holdout]


def refit(folder: Path, store_path: str) -> tuple[Recalibration, dict[str, Any]]:
    """The folder's calibration fitted again on its final holdout; with the folder's results.json."""
    model_config = usvcl_hf.UsvclConfig.from_pretrained(folder)
    if model_config.calibration_bias:
        raise ExportError(f"{folder}: already calibrated with a bias ({model_config.calibration_bias:+.3f})")
    old_temperature = model_config.calibration_temperature
    results = read_json(folder / RESULTS_COPY)
    config = run_config(results, store_path)
    logits, labels = holdout_logits(folder, config)
    temperature, bias = evaluation.fit_calibration(logits, labels)
    threshold = mapped_threshold(model_config.decision_threshold, old_temperature, temperature, bias)
    recalibration = Recalibration(
        temperature, bias, threshold, old_temperature, model_config.decision_threshold, len(labels),
        evaluation.negative_log_likelihood(logits, labels, old_temperature),
        evaluation.negative_log_likelihood(logits, labels, temperature, bias),
    )
    return recalibration, results


def record(results: dict[str, Any], recalibration: Recalibration) -> dict[str, Any]:
    """results.json with the final model's new calibration and threshold, and how they were made."""
    summary = (
        f"Calibration fitted again after training (`python -m training.finetune.recalibrate`, commit {git_commit()}): "
        f"temperature and bias together on the same {recalibration.holdout_images}-image holdout, scored by these "
        f"float32-loaded weights (holdout NLL {recalibration.nll_before:.3f} with the temperature alone, "
        f"{recalibration.nll_after:.3f} with both); the threshold mapped from {recalibration.previous_threshold:.3f} "
        f"(at T = {recalibration.previous_temperature:.3f}) so that the decisions are unchanged."
    )
    final = {**results["final_model"], "temperature": recalibration.temperature,
             "calibration_bias": recalibration.bias, "threshold": recalibration.threshold,
             "recalibrated": {"command": run_command("training.finetune.recalibrate"),
                              **dataclasses.asdict(recalibration), "summary": summary}}
    choices = [item for item in results.get("choices", []) if item["choice"] != CHOICE["choice"]]
    return {**results, "final_model": final, "choices": [*choices, CHOICE]}


def recalibrate(folder: Path, store_path: str, repo_id: str | None = None) -> Recalibration:
    """Refit, rewrite the folder with the new decision rule, record it in results.json, render the card again."""
    recalibration, results = refit(folder, store_path)

    def update(model: UsvclForImageClassification) -> None:
        set_decision_rule(model.config, recalibration.temperature, recalibration.threshold, recalibration.bias)

    rewrite_classifier_folder(folder, update)
    (folder / RESULTS_COPY).write_text(json.dumps(record(results, recalibration), indent=2) + "\n")
    rerender_classifier_card(folder, folder / RESULTS_COPY, repo_id=repo_id)
    return recalibration


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m training.finetune.recalibrate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="exported classifier folder, rewritten in place")
    parser.add_argument("--store-path", required=True, help="the labelled store the final model was trained on")
    parser.add_argument("--repo-id", help="Hub id the card names (default: the folder name)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Refit and rewrite; log the new calibration and where it went. Returns the exit code."""
    args = build_parser().parse_args(argv)
    require_inputs("python -m training.finetune.recalibrate",
                   {"--folder": args.folder, "--store-path": args.store_path})
    setup_logging()
    usvcl_hf.register_auto_classes()
    try:
        result = recalibrate(args.folder, args.store_path, args.repo_id)
    except (ExportError, FileNotFoundError) as error:
        LOGGER.error("recalibration failed: %s", error)
        return 1
    LOGGER.info("%s: T %.3f, bias %+.3f, threshold %.3f (holdout NLL %.3f -> %.3f, %d images); rewritten in place",
                args.folder.resolve(), result.temperature, result.bias, result.threshold, result.nll_before,
                result.nll_after, result.holdout_images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
