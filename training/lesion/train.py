"""Train the lesion segmenter (issue #16) on BUS-BRA's masks with leak-free, patient-grouped cross-validation.

    python -m training.lesion --store-path stores/bus_bra --output-dir runs/lesion [--init imagenet]
    accelerate launch [--cpu] -m training.lesion --config training/configs/lesion_bus_bra.yaml [--folds 1]

The store needs a `mask` column (`python -m training.prepare_data images --input ../shared/data/bus_bra ...` adds
it). Examples: every image with its mask, and a lesion-free crop of each image that has room for one (an empty
target; `training.lesion.data`). Loss: soft Dice + pixel BCE + presence BCE (`usvcl_hf.losses_lesion`).

Folds: BUS-BRA's official test folds; each fold's inner validation split is redrawn by patient and leak-checked
(`training.finetune.make_folds`). Chosen on the inner validation split only, per fold: the epoch (best mean Dice of
the validation lesion images), the presence score (`max_pixel` or `head`, better validation AUROC of lesion images
against their crops) and the lesion threshold (Youden's J on that score). Reported on the test folds: Dice and IoU
of each lesion image at its stored size (per fold and pooled, patient-bootstrap 95% CIs) and presence AUROC,
sensitivity and specificity of lesion images against lesion-free crops. The final model is trained on every image
for the median chosen epoch, with the median threshold and the presence score most folds chose.
Also each fold's predicted lesion box of its inner-validation and test images (boxes.csv: lesion crops for
`training.finetune --lesion-crop --eval-boxes`, whose inner splits are the same with the same seed).
Outputs in --output-dir: predictions.csv, boxes.csv, results.json, results.md, manifest.json, final_model/.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import usvcl_hf
from training import evaluation, imagenet_init
from training.atomic import write_json_atomic
from training.cli_inputs import require_inputs
from training.common import EpochSeededSampler, backward_and_step, build_scheduler, cpu_state_dict
from training.config import config_to_dict, load_config
from training.finetune import Fold, make_folds, write_csv
from training.lesion.boxes import BOX_FILE_COLUMNS, box_cells
from training.lesion.data import (
    CROP,
    KIND_NAMES,
    LESION,
    LesionDataset,
    MaskedData,
    augment_on_device,
    example_items,
    load_masked_data,
    normalise,
)
from training.provenance import git_commit, machine_description, run_command
from usvcl_hf.configuration_lesion import PRESENCE_SCORES
from usvcl_hf.lesion_crop import Box, mask_box

LOGGER = get_logger(__name__)
MODEL = usvcl_hf.LesionConfig()  # the model's defaults, so this config cannot drift from them
INITS = ("imagenet", "random")
SEGMENTATION_METRICS = ("dice", "iou")
PRESENCE_METRICS = ("auc", "sensitivity", "specificity")
EXACT_DIGITS = 17
SEED_STREAM_FOLD, SEED_STREAM_FINAL = 1, 3
PREDICTION_COLUMNS = ["image_id", "patient_id", "fold", "kind", "dice", "iou", "presence_max_pixel",
                      "presence_head", "presence_score", "lesion_threshold"]


@dataclasses.dataclass
class LesionTrainConfig:
    """Everything `training/lesion/train.py` needs (YAML via --config, every field also an option)."""

    store_path: str = "stores/bus_bra"
    output_dir: str = "runs/lesion"
    init: str = "imagenet"  # "imagenet" (offline weights, training.imagenet_init) | "random"
    backbone: str = MODEL.backbone
    image_size: int = MODEL.image_size
    decoder_channels: list[int] = dataclasses.field(default_factory=lambda: list(MODEL.decoder_channels))
    dice_weight: float = MODEL.dice_weight
    bce_weight: float = MODEL.bce_weight
    presence_weight: float = MODEL.presence_weight
    crop_margin: int = 8  # stored-image pixels kept between a lesion-free crop and the mask's bounding box
    min_crop_side: int = 32  # no crop from images whose free bands are narrower
    augment: bool = True
    folds: list[int] | None = None  # run only these official folds (1-based)
    num_folds: int = 5  # used when the store has no official folds
    val_fraction: float = 0.2
    batch_size: int = 16
    eval_batch_size: int = 32
    num_epochs: int = 15
    max_steps_per_epoch: int = -1  # > 0 caps an epoch (smoke tests)
    learning_rate: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # "bf16" | "fp16" (GPU only) | "no"
    seed: int = 42
    num_workers: int = 0
    bootstrap_samples: int = 1000
    final_model: bool = True
    final_epochs: int = 0  # > 0: the final model's epochs; 0: the median epoch the folds chose
    final_only: bool = False  # skip cross-validation: only the final model (needs final_epochs; choices applied later
    # from a cross-validation run by `python -m training.lesion.choices`)


@dataclasses.dataclass
class ItemScores:
    """Evaluation of items `(row, kind)`: segmentation quality of lesion items, both presence scores of all."""

    items: np.ndarray  # (m, 2)
    dice: np.ndarray  # (m,) NaN for crops
    iou: np.ndarray  # (m,) NaN for crops
    presence: dict[str, np.ndarray]  # score name -> (m,)
    boxes: list[Box | None]  # (m,) bounding box of the predicted mask of lesion items (None for crops / no lesion)


@dataclasses.dataclass
class FoldOutcome:
    """What one fold chose on validation and how its test items scored."""

    best_epoch: int
    val_dice: float
    val_auc: dict[str, float]
    presence_score: str
    threshold: float
    test: ItemScores
    val: ItemScores


def build_model(config: LesionTrainConfig) -> usvcl_hf.LesionSegmentationModel:
    """A fresh segmenter; its encoder from the offline ImageNet weights when `init` is "imagenet"."""
    if config.init not in INITS:
        raise ValueError(f"`init` must be one of {list(INITS)}, got {config.init!r}.")
    model = usvcl_hf.LesionSegmentationModel(usvcl_hf.LesionConfig(
        backbone=config.backbone, image_size=config.image_size, decoder_channels=config.decoder_channels,
        dice_weight=config.dice_weight, bce_weight=config.bce_weight, presence_weight=config.presence_weight))
    if config.init == "imagenet":
        imagenet_init.load_imagenet_weights(model.encoder, config.backbone)
    return model


def build_processor(config: LesionTrainConfig) -> usvcl_hf.UsvclImageProcessor:
    """The processor saved with the model (ImageNet normalisation for an ImageNet init)."""
    normalization = imagenet_init.processor_normalization(config.backbone, 1, config.init == "imagenet")
    return usvcl_hf.UsvclImageProcessor(image_size=config.image_size, **normalization)


def make_loader(dataset: LesionDataset, batch_size: int, shuffle_seed: int | None, workers: int) -> DataLoader:
    """Loader; shuffled with an epoch-seeded order when `shuffle_seed` is given."""
    sampler = EpochSeededSampler(len(dataset), shuffle_seed) if shuffle_seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=workers > 0)


def overlap_scores(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice `2|P∩T| / (|P| + |T|)` and IoU `|P∩T| / |P∪T|` of two boolean masks (1, 1 when both are empty)."""
    intersection = float(np.logical_and(predicted, truth).sum())
    total = float(predicted.sum() + truth.sum())
    union = total - intersection
    return (2 * intersection / total if total else 1.0), (intersection / union if union else 1.0)


@torch.no_grad()
def score_items(accelerator: Accelerator, model: torch.nn.Module, dataset: LesionDataset,
                processor: usvcl_hf.UsvclImageProcessor, batch_size: int) -> ItemScores:
    """Dice / IoU and the predicted mask's box of each lesion item at its stored size
    (`post_process_semantic_segmentation`) and both presence scores of every item, gathered over processes (no
    loader workers: un-augmented items are cheap)."""
    model.eval()
    loader = accelerator.prepare(make_loader(dataset, batch_size, None, 0))
    count = len(dataset)
    dice, iou = np.full(count, np.nan), np.full(count, np.nan)
    presence = {name: np.zeros(count) for name in PRESENCE_SCORES}
    boxes: list[Box | None] = [None] * count
    for batch in loader:
        output = model(pixel_values=normalise(batch["squares"], processor))
        positions, logits, heads = accelerator.gather_for_metrics(
            (batch["position"], output.logits.float(), output.presence_logits.float()))
        presence["max_pixel"][positions.cpu().numpy()] = torch.sigmoid(logits.flatten(1).amax(1)).cpu().numpy()
        presence["head"][positions.cpu().numpy()] = torch.sigmoid(heads).cpu().numpy()
        for position, mask_logits in zip(positions.tolist(), logits):
            if dataset.items[position, 1] == LESION:
                truth = dataset.data.masks[dataset.items[position, 0]]
                (predicted,) = processor.post_process_semantic_segmentation(
                    {"logits": mask_logits[None]}, target_sizes=[truth.shape])
                dice[position], iou[position] = overlap_scores(predicted.numpy().astype(bool), truth)
                boxes[position] = mask_box(predicted.numpy().astype(bool))
    model.train()
    return ItemScores(dataset.items, dice, iou, presence, boxes)


def presence_auc(scores: ItemScores, name: str) -> float:
    """AUROC of a presence score: lesion items (positive) against lesion-free crops."""
    return evaluation.auc(scores.items[:, 1] == LESION, scores.presence[name])


def train_model(accelerator: Accelerator, config: LesionTrainConfig, data: MaskedData,
                processor: usvcl_hf.UsvclImageProcessor, train_rows: np.ndarray, val_rows: np.ndarray | None,
                num_epochs: int, seed: int, description: str) -> tuple[usvcl_hf.LesionSegmentationModel, int]:
    """Train a fresh model; with `val_rows`, keep the epoch of best validation Dice. Returns (model, epoch)."""
    set_seed(seed)
    model = build_model(config)
    items = example_items(data, train_rows, config.crop_margin, config.min_crop_side)
    train_set = LesionDataset(data, items, processor, config.augment, seed, config.crop_margin, config.min_crop_side)
    loader = make_loader(train_set, config.batch_size, seed, config.num_workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = len(loader) if config.max_steps_per_epoch <= 0 else min(len(loader), config.max_steps_per_epoch)
    scheduler = accelerator.prepare(build_scheduler(optimizer, config.warmup_steps, steps * num_epochs,
                                                    config.min_lr / config.learning_rate, accelerator.num_processes))
    val_set = None if val_rows is None else LesionDataset(
        data, example_items(data, val_rows, config.crop_margin, config.min_crop_side), processor, False, seed,
        config.crop_margin, config.min_crop_side)
    best = (-np.inf, num_epochs, None)  # (validation Dice, epoch, weights)
    model.train()
    for epoch in tqdm(range(1, num_epochs + 1), desc=description, disable=not accelerator.is_main_process):
        train_set.set_epoch(epoch)
        loader.set_epoch(epoch)
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            squares, targets = batch["squares"], batch["labels"]
            if config.augment:
                squares, targets = augment_on_device(squares, targets, batch["views"], seed * 10**6 + epoch * 10**4
                                                     + step)
            loss = model(pixel_values=normalise(squares, processor), labels=targets).loss
            backward_and_step(accelerator, model, loss, optimizer, scheduler, config.max_grad_norm)
        if val_set is not None:
            val_dice = float(np.nanmean(score_items(accelerator, model, val_set, processor,
                                                    config.eval_batch_size).dice))
            if best[2] is None or val_dice > best[0]:
                best = (val_dice, epoch, cpu_state_dict(accelerator.unwrap_model(model)))
    unwrapped = accelerator.unwrap_model(model)
    if best[2] is not None:
        unwrapped.load_state_dict(best[2])
    accelerator.free_memory()
    return unwrapped.eval(), best[1]


def choose_presence(val: ItemScores) -> tuple[str, dict[str, float], float]:
    """The presence score with the better validation AUROC (ties: `max_pixel`), both AUROCs, and its Youden
    threshold on the validation lesion items against their crops."""
    aucs = {name: presence_auc(val, name) for name in PRESENCE_SCORES}
    chosen = max(PRESENCE_SCORES, key=lambda name: (np.nan_to_num(aucs[name], nan=-1.0), name == "max_pixel"))
    threshold = evaluation.youden_threshold(val.items[:, 1] == LESION, val.presence[chosen])
    return chosen, aucs, threshold


def run_fold(accelerator: Accelerator, config: LesionTrainConfig, data: MaskedData,
             processor: usvcl_hf.UsvclImageProcessor, fold: Fold) -> FoldOutcome:
    """Train on `fold.train`, choose epoch / presence score / threshold on `fold.val`, score `fold.test`."""
    model, best_epoch = train_model(accelerator, config, data, processor, fold.train, fold.val, config.num_epochs,
                                    config.seed + SEED_STREAM_FOLD * 1000 + fold.number, f"fold {fold.number}")
    model = model.to(accelerator.device)

    def scores(rows: np.ndarray) -> ItemScores:
        items = example_items(data, rows, config.crop_margin, config.min_crop_side)
        dataset = LesionDataset(data, items, processor, False, config.seed, config.crop_margin, config.min_crop_side)
        return score_items(accelerator, model, dataset, processor, config.eval_batch_size)

    val = scores(fold.val)
    presence_score, val_auc, threshold = choose_presence(val)
    return FoldOutcome(best_epoch, float(np.nanmean(val.dice)), val_auc, presence_score, threshold, scores(fold.test),
                       val)


def segmentation_metrics(dice: np.ndarray, iou: np.ndarray, patients: np.ndarray, n_boot: int,
                         seed: int) -> dict[str, dict[str, float]]:
    """Mean Dice and IoU of lesion images with patient-bootstrap 95% CIs."""
    values = {"dice": dice, "iou": iou}
    intervals = evaluation.bootstrap_ci(
        lambda weights: {name: float(np.average(value, weights=weights)) for name, value in values.items()},
        patients, n_boot, seed)
    return {name: {"value": float(np.mean(value)), "ci_low": intervals[name][0], "ci_high": intervals[name][1]}
            for name, value in values.items()}


def presence_metrics(is_lesion: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | float,
                     patients: np.ndarray, n_boot: int, seed: int) -> dict[str, dict[str, float]]:
    """AUROC, sensitivity, specificity of lesion presence (lesion images vs crops), patient-bootstrap 95% CIs."""
    values = evaluation.binary_metrics(is_lesion, scores, thresholds)
    replicates = evaluation.binary_metrics(is_lesion, scores, thresholds,
                                           weights=evaluation.patient_bootstrap_weights(patients, n_boot, seed))
    return {name: dict(zip(("value", "ci_low", "ci_high"),
                           (float(values[name]), *evaluation.percentile_interval(replicates[name]))))
            for name in PRESENCE_METRICS}


def evaluate_items(data: MaskedData, scores: ItemScores, chosen: np.ndarray, thresholds: np.ndarray,
                   config: LesionTrainConfig, seed: int) -> dict[str, Any]:
    """Segmentation metrics of the lesion items, presence metrics of the chosen score and of both scores' AUROC."""
    rows, lesion = scores.items[:, 0], scores.items[:, 1] == LESION
    patients = data.patient_ids[rows]
    chosen_scores = np.where(chosen == "head", scores.presence["head"], scores.presence["max_pixel"])
    metrics = segmentation_metrics(scores.dice[lesion], scores.iou[lesion], patients[lesion],
                                   config.bootstrap_samples, seed)
    metrics["presence"] = presence_metrics(lesion, chosen_scores, thresholds, patients, config.bootstrap_samples,
                                           seed)
    metrics["presence_auc_by_score"] = {
        name: presence_metrics(lesion, scores.presence[name], 0.5, patients, config.bootstrap_samples, seed)["auc"]
        for name in PRESENCE_SCORES}
    return metrics


def concatenate(outcomes: list[FoldOutcome]) -> ItemScores:
    """The folds' test items as one `ItemScores` (pooled)."""
    tests = [outcome.test for outcome in outcomes]
    return ItemScores(np.concatenate([test.items for test in tests]), np.concatenate([test.dice for test in tests]),
                      np.concatenate([test.iou for test in tests]),
                      {name: np.concatenate([test.presence[name] for test in tests]) for name in PRESENCE_SCORES},
                      [box for test in tests for box in test.boxes])


def prediction_rows(data: MaskedData, folds: list[Fold], outcomes: list[FoldOutcome]) -> list[list[Any]]:
    """`PREDICTION_COLUMNS` rows: every test item of every fold, every digit kept."""
    table = []
    for fold, outcome in zip(folds, outcomes):
        test = outcome.test
        for index, (row, kind) in enumerate(test.items):
            numbers = (test.dice[index], test.iou[index], test.presence["max_pixel"][index],
                       test.presence["head"][index])
            table.append([data.image_ids[row], data.patient_ids[row], fold.number, KIND_NAMES[kind],
                          *(f"{value:.{EXACT_DIGITS}g}" for value in numbers), outcome.presence_score,
                          f"{outcome.threshold:.{EXACT_DIGITS}g}"])
    return table


def box_rows(data: MaskedData, folds: list[Fold], outcomes: list[FoldOutcome]) -> list[list[Any]]:
    """`BOX_FILE_COLUMNS` rows: the predicted mask's box of every inner-validation and test image of every fold
    (`training.lesion.boxes`; lesion crops for a classifier that shares these inner splits)."""
    table = []
    for fold, outcome in zip(folds, outcomes):
        for split, scores in (("val", outcome.val), ("test", outcome.test)):
            for (row, kind), box in zip(scores.items, scores.boxes):
                if kind == LESION:
                    table.append([fold.number, split, data.image_ids[row], *box_cells(box)])
    return table


def fold_summary(fold: Fold, outcome: FoldOutcome, data: MaskedData, config: LesionTrainConfig) -> dict[str, Any]:
    """One fold's choices and test metrics for results.json."""
    count = len(outcome.test.items)
    metrics = evaluate_items(data, outcome.test, np.full(count, outcome.presence_score), np.full(count,
                             outcome.threshold), config, config.seed + fold.number)
    return {"fold": fold.number, "n_train": len(fold.train), "n_val": len(fold.val), "n_test": len(fold.test),
            "n_test_crops": int((outcome.test.items[:, 1] == CROP).sum()), "best_epoch": outcome.best_epoch,
            "val_dice": outcome.val_dice, "val_auc": outcome.val_auc, "presence_score": outcome.presence_score,
            "lesion_threshold": outcome.threshold, "metrics": metrics}


def final_choices(fold_results: list[dict[str, Any]]) -> dict[str, Any]:
    """What the final model takes from the folds: the median chosen epoch, the presence score most folds chose and
    the median lesion threshold; the model's defaults without folds."""
    if not fold_results:
        return {"epochs": 0, "presence_score": MODEL.presence_score, "lesion_threshold": MODEL.lesion_threshold}
    return {"epochs": max(1, int(np.median([fold["best_epoch"] for fold in fold_results]))),
            "presence_score": Counter(fold["presence_score"] for fold in fold_results).most_common(1)[0][0],
            "lesion_threshold": float(np.median([fold["lesion_threshold"] for fold in fold_results]))}


def train_final_model(accelerator: Accelerator, config: LesionTrainConfig, data: MaskedData,
                      processor: usvcl_hf.UsvclImageProcessor, fold_results: list[dict[str, Any]],
                      output_dir: Path) -> dict[str, Any]:
    """Train on every image (`final_choices`, or `final_epochs` when set) and save with the folds' choices."""
    choices = final_choices(fold_results)
    epochs = config.final_epochs if config.final_epochs > 0 else choices["epochs"]
    if epochs < 1:
        raise ValueError("The final model needs --final-epochs when no fold is cross-validated (--final-only).")
    model, _ = train_model(accelerator, config, data, processor, np.arange(len(data.image_ids)), None, epochs,
                           config.seed + SEED_STREAM_FINAL, "final model")
    final_dir = output_dir / "final_model"
    if accelerator.is_main_process:
        model.config.presence_score = choices["presence_score"]
        model.config.lesion_threshold = float(np.clip(choices["lesion_threshold"], 0.0, 1.0))
        model.to("cpu").save_pretrained(str(final_dir))
        processor.save_pretrained(str(final_dir))
    accelerator.wait_for_everyone()
    return {"path": str(final_dir), **choices, "epochs": epochs}


def results_markdown(results: dict[str, Any]) -> str:
    """results.md: per-fold and pooled Dice, IoU and presence metrics with 95% CIs."""
    headers = ["fold", "n test", "Dice", "IoU", "presence AUROC", "sensitivity", "specificity", "score",
               "threshold", "epoch"]
    rows = []
    pooled = [{"fold": "pooled", **results["pooled"]}] if results["pooled"] else []
    for entry in [*results["folds"], *pooled]:
        metrics, presence = entry["metrics"], entry["metrics"]["presence"]
        rows.append([entry["fold"], entry.get("n_test", results["n_test"]),
                     *(evaluation.format_interval(metrics[name]) for name in SEGMENTATION_METRICS),
                     *(evaluation.format_interval(presence[name]) for name in PRESENCE_METRICS),
                     entry.get("presence_score", "per fold"), f"{entry['lesion_threshold']:.3f}"
                     if "lesion_threshold" in entry else "per fold", entry.get("best_epoch", "")])
    text = "# Lesion segmentation results\n\n"
    text += f"Command: `{results['command']}`  \nCommit: {results['commit']}; machine: {results['machine']}; "
    text += f"wall time {results['wall_time_s']:.0f} s.\n\n"
    text += ("Dice / IoU: test lesion images at their stored size. Presence: test lesion images against lesion-free "
             "crops of the same images. 95% CIs: patient bootstrap. Epoch, presence score and threshold chosen on "
             "each fold's inner validation split.\n\n")
    return text + evaluation.markdown_table(headers, rows)


def training_function(config: LesionTrainConfig) -> dict[str, Any]:
    """Cross-validate, pool, train the final model and write the outputs; returns the results."""
    started = time.perf_counter()
    accelerator = Accelerator(mixed_precision="no" if config.mixed_precision == "fp16" and not torch.cuda.is_available()
                              else config.mixed_precision)
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    processor = build_processor(config)
    data = load_masked_data(config.store_path)
    folds = [] if config.final_only else select_folds(make_folds(
        data.labels, data.patient_ids, data.split_columns, config.num_folds, config.val_fraction, config.seed),
        config.folds)
    LOGGER.info(f"{len(data.image_ids)} images with masks; folds {[fold.number for fold in folds]}",
                main_process_only=True)
    outcomes, fold_results = [], []
    for fold in folds:
        outcomes.append(run_fold(accelerator, config, data, processor, fold))
        fold_results.append(fold_summary(fold, outcomes[-1], data, config))
        LOGGER.info(f"fold {fold.number}: Dice {evaluation.format_interval(fold_results[-1]['metrics']['dice'])}",
                    main_process_only=True)
        if accelerator.is_main_process:  # kept if a later fold is stopped by a deadline
            write_json_atomic(output_dir / "folds_done.json", fold_results)
    final = train_final_model(accelerator, config, data, processor, fold_results, output_dir) \
        if config.final_model or config.final_only else {"path": None}
    results = {"command": run_command("training.lesion.train"), "commit": git_commit(),
               "machine": machine_description(), "wall_time_s": time.perf_counter() - started, "init": config.init,
               "config": config_to_dict(config), "n_images": len(data.image_ids),
               "n_test": int(sum(len(fold.test) for fold in folds)), "folds": fold_results,
               "pooled": pooled_summary(data, outcomes, config), "final_model": final}
    if accelerator.is_main_process:
        write_outputs(output_dir, results, prediction_rows(data, folds, outcomes), box_rows(data, folds, outcomes))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def pooled_summary(data: MaskedData, outcomes: list[FoldOutcome], config: LesionTrainConfig) -> dict | None:
    """Metrics of all folds' test items together, each item scored with its own fold's presence choice (None
    without folds)."""
    if not outcomes:
        return None
    chosen = np.concatenate([np.full(len(outcome.test.items), outcome.presence_score) for outcome in outcomes])
    thresholds = np.concatenate([np.full(len(outcome.test.items), outcome.threshold) for outcome in outcomes])
    return {"metrics": evaluate_items(data, concatenate(outcomes), chosen, thresholds, config, config.seed)}


def select_folds(folds: list[Fold], wanted: list[int] | None) -> list[Fold]:
    """The folds named by `--folds` (all without it)."""
    chosen = [fold for fold in folds if not wanted or fold.number in set(wanted)]
    if not chosen:
        raise ValueError(f"--folds {wanted}: no such fold.")
    return chosen


def write_outputs(output_dir: Path, results: dict[str, Any], predictions: list[list[Any]],
                  boxes: list[list[Any]]) -> None:
    """predictions.csv, boxes.csv, results.json, results.md (main process)."""
    write_csv(output_dir / "predictions.csv", PREDICTION_COLUMNS, predictions)
    write_csv(output_dir / "boxes.csv", BOX_FILE_COLUMNS, boxes)
    write_json_atomic(output_dir / "results.json", results)
    (output_dir / "results.md").write_text(results_markdown(results))
    LOGGER.info(f"Results written to {output_dir / 'results.json'}, {output_dir / 'results.md'}, "
                f"{output_dir / 'predictions.csv'} and {output_dir / 'boxes.csv'}; "
                f"final model: {results['final_model']['path']}", main_process_only=True)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(LesionTrainConfig, argv if argv is not None else sys.argv[1:], description=__doc__,
                         prog="python -m training.lesion")
    require_inputs("python -m training.lesion", {"--store-path": config.store_path})
    training_function(config)


if __name__ == "__main__":
    main()
