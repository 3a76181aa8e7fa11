"""Fine-tune a usvcl encoder for benign / malignant classification with leak-free, patient-grouped cross-validation.

    python -m training.finetune --config training/configs/finetune_bus_bra.yaml --pretrained-path RUN/model
    accelerate launch [--num_processes N] [--cpu] -m training.finetune ... [--folds 1 2] [--no-final-model]
    ... --train-sizes 25 50 100 200 --label-draws 3     # label efficiency (same test folds, fewer training labels)
    ... --final-from RUN_A/results.json RUN_B/results.json  # the final model only, from finished folds' choices

Every fold gets a FRESH model from the init source; the best epoch (validation AUC), the calibration (temperature
and bias) and the decision threshold are chosen on the fold's inner validation split only, never on its test fold.
Structure follows accelerate's `examples/complete_cv_example.py`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator
from accelerate.logging import get_logger

import usvcl_hf
from training import evaluation
from training.atomic import write_json_atomic
from training.augment import AUGMENT_POLICIES
from training.cli_inputs import require_inputs
from training.common import make_accelerator
from training.config import FinetuneConfig, config_to_dict, load_config
from training.finetune.data import LabeledData, LesionCrops, load_labeled_data
from training.finetune.label_efficiency import run_label_efficiency
from training.finetune.model import INITS, build_processor, class_weights, for_fold, resolve_image_size
from training.finetune.outputs import (
    SELECTION,
    Pooled,
    PredictionRecord,
    fold_metrics,
    mean_std,
    prediction_columns,
    prediction_record,
    prediction_table,
    write_config,
    write_csv,
    write_outputs,
)
from training.finetune.train import FoldOutcome, run_fold, train_final_model
from training.folds import (
    CROSS_DEVICE_TEST,
    SPLITS,
    Fold,
    cross_device_folds,
    cross_device_sides,
    make_folds,
    split_summary,
)
from training.lesion.boxes import read_boxes
from training.logs import setup_logging
from training.provenance import device_facts, git_commit, machine_description, run_command

LOGGER = get_logger(__name__)


@dataclasses.dataclass
class FinetuneRun:
    """What the steps of one fine-tuning run share."""

    config: FinetuneConfig
    accelerator: Accelerator
    processor: usvcl_hf.UsvclImageProcessor
    data: LabeledData
    folds: list[Fold]
    started: float
    commit: str  # the code's commit when the run started (HEAD may move while it trains)

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)


@dataclasses.dataclass
class CrossValidation:
    """The folds' outcomes, their results.json entries and their test / inner-validation prediction records."""

    outcomes: list[FoldOutcome] = dataclasses.field(default_factory=list)
    fold_results: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    records: list[PredictionRecord] = dataclasses.field(default_factory=list)
    val_records: list[PredictionRecord] = dataclasses.field(default_factory=list)


def validate_config(config: FinetuneConfig) -> None:
    """Raise `ValueError` for values the run cannot use."""
    if config.split not in SPLITS:
        raise ValueError(f"`split` must be one of {list(SPLITS)}, got {config.split!r}.")
    if config.init not in INITS:
        raise ValueError(f"`init` must be one of {list(INITS)}, got {config.init!r}.")
    if config.augment_policy not in AUGMENT_POLICIES:
        raise ValueError(f"`augment_policy` must be one of {list(AUGMENT_POLICIES)}, got {config.augment_policy!r}.")
    if not (0.0 <= config.label_smoothing < 1.0 and 0.0 <= config.ema_decay < 1.0 and config.backbone_lr_scale > 0):
        raise ValueError("`label_smoothing` and `ema_decay` must be in [0, 1) and `backbone_lr_scale` > 0.")
    if config.mask_loss_weight < 0:
        raise ValueError(f"`mask_loss_weight` must be >= 0 (0 = no lesion-mask loss), got {config.mask_loss_weight}.")
    if config.lesion_crop and (config.mask_loss_weight > 0 or config.crop_margin < 0):
        raise ValueError("`lesion_crop` needs `crop_margin` >= 0 and no lesion-mask loss (its masks are not cut).")
    if config.final_from and (not config.final_model or config.eval_boxes or config.train_sizes):
        raise ValueError("`final_from` trains the final model only: it needs `final_model` and takes no "
                         "`eval_boxes` or `train_sizes` (no cross-validation is run).")
    if config.eval_boxes and not config.lesion_crop:
        raise ValueError("`eval_boxes` are lesion boxes of the validation and test images: they need `lesion_crop`.")


def lesion_crops(config: FinetuneConfig) -> LesionCrops | None:
    """The run's lesion crops (`--lesion-crop`), with the segmenters' boxes read from `--eval-boxes` files."""
    if not config.lesion_crop:
        return None
    return LesionCrops(config.crop_margin, read_boxes(config.eval_boxes) if config.eval_boxes else None)


def check_eval_boxes(crops: LesionCrops | None, data: LabeledData, folds: list[Fold], files: list[str]) -> None:
    """Raise `ValueError` naming the box files unless each chosen fold's segmenter boxed exactly this run's
    validation and test images of that fold: validated on other images, it trained on some of this run's."""
    if crops is None or crops.eval_boxes is None:
        return
    for fold in folds:
        for split, rows in (("val", fold.val), ("test", fold.test)):
            boxed = {image_id for number, side, image_id in crops.eval_boxes if number == fold.number and side == split}
            if boxed != set(data.image_ids[rows]):
                raise ValueError(
                    f"{', '.join(files)}: fold {fold.number}'s segmenter boxed {len(boxed)} {split} images, not this "
                    f"run's {len(rows)}; train it on the same folds and inner splits (training.lesion.train with "
                    f"this run's split seed and val fraction).")


def run_folds(config: FinetuneConfig, data: LabeledData) -> list[Fold]:
    """The run's folds: the store's official folds (else grouped CV), or `--split cross_device`'s one split by
    scanner (its count of patients with images on both sides logged; they are kept on the test side only)."""
    split_seed = config.seed if config.split_seed is None else config.split_seed
    if config.split == "cross_device":
        spanning = cross_device_sides(data.devices, data.patient_ids)[2]
        LOGGER.info("cross-device split: test scanners %s; %d patients with images on both sides%s",
                    list(CROSS_DEVICE_TEST), len(spanning), f" ({spanning[:10]})" if spanning else "")
        return cross_device_folds(data.labels, data.patient_ids, data.devices, config.val_fraction, split_seed)
    return make_folds(data.labels, data.patient_ids, data.split_columns, config.num_folds, config.val_fraction,
                      split_seed)


def prepare_run(config: FinetuneConfig) -> FinetuneRun:
    """Accelerator, config.yaml, processor (size and normalisation of the first fold's init model), data, folds."""
    started = time.perf_counter()
    validate_config(config)
    accelerator = make_accelerator(config.mixed_precision)
    if accelerator.is_main_process:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        write_config(Path(config.output_dir), config)  # first, so a run stopped early still names its configuration
    reference = for_fold(config, (config.folds or [1])[0])
    image_size, resize_mode = resolve_image_size(reference)
    processor = build_processor(reference, image_size, resize_mode)
    crops = lesion_crops(config)
    data = load_labeled_data(config.store_path, image_size, resize_mode, with_masks=config.mask_loss_weight > 0,
                             crops=crops)
    folds = run_folds(config, data)
    if config.folds:
        folds = [fold for fold in folds if fold.number in set(config.folds)]
        if not folds:
            raise ValueError(f"--folds {config.folds}: no such fold.")
    check_eval_boxes(crops, data, folds, config.eval_boxes or [])
    return FinetuneRun(config, accelerator, processor, data, folds, started, git_commit())


def fold_entry(run: FinetuneRun, fold: Fold, outcome: FoldOutcome) -> dict[str, Any]:
    """A fold's results.json entry: sizes, choices made on its validation split, test metrics with CIs."""
    config, data = run.config, run.data
    weights = class_weights(data.labels[fold.train], len(data.class_names)) if config.class_weighted_loss else None
    metrics = fold_metrics(config, data, fold.test, outcome.test_logits, (outcome.temperature, outcome.bias),
                           outcome.threshold, seed=config.seed + fold.number)
    return {
        "fold": fold.number, "n_train": len(fold.train), "n_val": len(fold.val), "n_test": len(fold.test),
        "threshold": outcome.threshold, "temperature": outcome.temperature, "calibration_bias": outcome.bias,
        "best_epoch": outcome.best_epoch,
        "val_auc": outcome.val_auc, "class_weights": weights, "metrics": metrics,
    }


def cross_validate(run: FinetuneRun) -> CrossValidation:
    """Every fold: a fresh model trained, chosen and calibrated on its inner validation, scored on its test fold.
    What is finished is written after each fold (`folds_done.json`, `predictions_done.csv`), and so are the inner
    validation predictions that each fold's choices used (`val_predictions.csv`: ensembles chosen on validation)."""
    done = CrossValidation()
    for fold in run.folds:
        outcome = run_fold(run.accelerator, run.config, run.data, run.processor, fold, fold.train,
                           f"fold {fold.number}")
        done.outcomes.append(outcome)
        done.fold_results.append(fold_entry(run, fold, outcome))
        done.records.append(prediction_record(fold.number, fold.test, outcome.test_logits, outcome))
        done.val_records.append(prediction_record(fold.number, fold.val, outcome.val_logits, outcome))
        LOGGER.info("fold %d: test AUC %s", fold.number,
                    evaluation.format_interval(done.fold_results[-1]["metrics"]["auc"]))
        if run.accelerator.is_main_process:  # kept if a later fold is interrupted
            write_json_atomic(run.output_dir / "folds_done.json", done.fold_results)
            write_csv(run.output_dir / "predictions_done.csv", prediction_columns(run.data),
                      prediction_table(run.data, done.records))
            write_csv(run.output_dir / "val_predictions.csv", prediction_columns(run.data),
                      prediction_table(run.data, done.val_records))
    return done


def pool_folds(run: FinetuneRun, done: CrossValidation) -> Pooled:
    """The test folds pooled, with patient-bootstrap CIs."""
    folds, outcomes = run.folds, done.outcomes
    rows = np.concatenate([fold.test for fold in folds])
    logits = np.concatenate([outcome.test_logits for outcome in outcomes])  # (n_test_total, 2)

    def per_row(name: str) -> np.ndarray:  # (n_test_total,): each test row gets its own fold's value
        return np.concatenate([np.full(len(f.test), getattr(o, name)) for f, o in zip(folds, outcomes)])

    calibration = (per_row("temperature"), per_row("bias"))
    threshold = per_row("threshold")
    metrics = fold_metrics(run.config, run.data, rows, logits, calibration, threshold, seed=run.config.seed)
    return Pooled(rows, logits, calibration, threshold, metrics)


def final_model(run: FinetuneRun, best_epochs: list[int], thresholds: list[float]) -> dict[str, Any]:
    """The final model (median best epoch and threshold of the folds; calibration on its own holdout), if asked."""
    threshold = float(np.median(thresholds))
    if not run.config.final_model:
        return {"path": None, "threshold": threshold, "temperature": 1.0, "calibration_bias": 0.0}
    epochs = max(1, int(np.median(best_epochs)))
    folder, (temperature, bias) = train_final_model(run.accelerator, run.config, run.data, run.processor, epochs,
                                                    threshold, run.output_dir)
    return {"path": str(folder), "threshold": threshold, "temperature": temperature, "calibration_bias": bias,
            "epochs": epochs}


def finished_folds(files: list[str]) -> list[dict[str, Any]]:
    """The `folds` entries of cross-validation results.json files (`--final-from`), each fold once."""
    folds: dict[int, dict[str, Any]] = {}
    for path in files:
        finished = json.loads(Path(path).read_text()).get("folds")
        if not finished:
            raise ValueError(f"{path}: no finished folds (--final-from takes the results.json of finetune runs).")
        for fold in finished:
            if fold["fold"] in folds:
                raise ValueError(f"{path}: fold {fold['fold']} is also in another --final-from file.")
            folds[fold["fold"]] = fold
    return [folds[number] for number in sorted(folds)]


def final_only(run: FinetuneRun) -> dict[str, Any]:
    """`--final-from`: the final model from finished cross-validation runs' fold choices; its results.json."""
    folds = finished_folds(run.config.final_from)
    final = final_model(run, [fold["best_epoch"] for fold in folds], [fold["threshold"] for fold in folds])
    results = {"command": run_command("training.finetune"), "commit": run.commit,
               "machine": machine_description(device_facts()), "wall_time_s": time.perf_counter() - run.started,
               "config": config_to_dict(run.config), "final_from": {"files": run.config.final_from,
                                                                     "folds": [fold["fold"] for fold in folds]},
               "final_model": final}
    if run.accelerator.is_main_process:
        write_json_atomic(run.output_dir / "results.json", results)
        LOGGER.info("final model from folds %s of %s: %s", results["final_from"]["folds"],
                    ", ".join(run.config.final_from), final["path"])
    return results


def split_entry(run: FinetuneRun) -> dict[str, Any]:
    """results.json `split`: its name, images per scanner on each side, and for cross_device the test scanners and
    the number of patients with images on both sides."""
    entry = {"name": run.config.split, **split_summary(run.data.devices, run.data.patient_ids, run.folds)}
    if run.config.split == "cross_device":
        entry.update(test_devices=list(CROSS_DEVICE_TEST),
                     patients_on_both_sides=len(cross_device_sides(run.data.devices, run.data.patient_ids)[2]))
    return entry


def assemble_results(
    run: FinetuneRun, done: CrossValidation, pooled: Pooled, label_summary: list, final: dict[str, Any]
) -> dict[str, Any]:
    """results.json: how the run was made (command, commit, device), its choices, folds, pooled metrics, figures."""
    config, device = run.config, device_facts()
    return {
        "command": run_command("training.finetune"),
        "commit": run.commit,
        "machine": machine_description(device),
        "device": device,
        "wall_time_s": time.perf_counter() - run.started,
        "init": config.init,
        "config": config_to_dict(config),
        "class_names": run.data.class_names,
        "class_weighting": (
            "Class-weighted cross-entropy, weights n / (2 n_class) from each training side's counts."
            if config.class_weighted_loss else "Unweighted cross-entropy."
        ),
        "folds": done.fold_results,
        "mean_val_auc": float(np.mean([outcome.val_auc for outcome in done.outcomes])),
        "split": split_entry(run),
        "selection": list(SELECTION),
        "pooled": pooled.metrics,
        "mean_std": mean_std(done.fold_results),
        "figures": {"roc": "roc.png", "reliability": "reliability.png", "confusion": "confusion.png",
                    "label_efficiency": "label_efficiency.png" if label_summary else None},
        "final_model": final,
    }


def training_function(config: FinetuneConfig) -> dict[str, Any]:
    """Cross-validate, evaluate, optionally run label efficiency and train the final model; returns results."""
    run = prepare_run(config)
    if config.final_from:
        return final_only(run)
    done = cross_validate(run)
    pooled = pool_folds(run, done)
    label_summary = run_label_efficiency(run.accelerator, config, run.data, run.processor, run.folds, run.output_dir)
    final = final_model(run, [outcome.best_epoch for outcome in done.outcomes],
                        [outcome.threshold for outcome in done.outcomes])
    results = assemble_results(run, done, pooled, label_summary, final)
    if run.accelerator.is_main_process:
        write_outputs(config, run.data, run.folds, done.outcomes, pooled, done.records, results, run.output_dir)
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    return results


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    setup_logging()
    config = load_config(FinetuneConfig, argv if argv is not None else sys.argv[1:], description=__doc__,
                         prog="python -m training.finetune")
    require_inputs("python -m training.finetune", {"--store-path": config.store_path, "--eval-boxes": config.eval_boxes,
                                                   "--final-from": config.final_from})
    training_function(config)
