"""Training one fold's model: optimiser, loss, EMA, the epoch loop with validation-AUC selection, predictions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import usvcl_hf
from training import evaluation
from training.augment import AUGMENT_POLICIES
from training.common import backward_and_step, build_scheduler, cpu_state_dict
from training.config import FinetuneConfig
from training.finetune.data import LabeledData, SquareDataset, make_loader
from training.finetune.model import build_classifier, class_weights, for_fold, save_model
from training.folds import Fold, cross_device_sides, inner_split

SEED_STREAM_FOLD, SEED_STREAM_LABELS, SEED_STREAM_FINAL = 1, 2, 3


@dataclasses.dataclass
class FoldOutcome:
    """What one trained fold gives: chosen epoch, threshold, calibration (temperature, bias) and test predictions."""

    best_epoch: int
    threshold: float
    temperature: float
    bias: float
    test_logits: np.ndarray  # (n_test, 2)
    val_auc: float
    val_logits: np.ndarray  # (n_val, 2), of the chosen epoch: what the calibration and threshold were fitted on


@torch.no_grad()
def predict_logits(
    accelerator: Accelerator, model: torch.nn.Module, loader: DataLoader, size: int, tta_flip: bool = False
) -> np.ndarray:
    """`(size, 2)` logits in dataset order, gathered over processes (padding dropped); with `tta_flip`, the mean
    of the logits of each image and of its horizontal mirror."""
    model.eval()
    logits = np.zeros((size, accelerator.unwrap_model(model).config.num_labels), dtype=np.float64)
    all_rows, all_logits = [], []
    for batch in loader:
        pixel_values = loader.dataset.pixel_values(batch)  # (B, C, S, S)
        with accelerator.autocast():
            batch_logits = model(pixel_values=pixel_values).logits.float()  # (B, 2)
            if tta_flip:
                batch_logits = (batch_logits + model(pixel_values=pixel_values.flip(-1)).logits.float()) / 2
        rows, batch_logits = accelerator.gather_for_metrics((batch["row"], batch_logits))
        all_rows.append(rows.cpu())
        all_logits.append(batch_logits.cpu())
    rows = torch.cat(all_rows).numpy()
    positions = {row: position for position, row in enumerate(loader.dataset.rows.tolist())}
    for row, row_logits in zip(rows.tolist(), torch.cat(all_logits).double().numpy()):
        logits[positions[row]] = row_logits
    model.train()
    return logits


def step_schedule(config: FinetuneConfig, loader_steps: int, num_epochs: int) -> tuple[int, int, int, int]:
    """(steps per pass, total optimizer steps, passes over the data, validate every k passes).

    By default `num_epochs` passes of `loader_steps` (capped by `max_steps_per_epoch`) with validation after each.
    With `max_steps > 0` the schedule is counted in optimizer steps instead, the same for every training-set size
    (label efficiency: 50 labels get as many updates as 400): ceil(max_steps / steps per pass) passes, validated
    about `num_epochs` times, evenly spaced, and after the last.
    """
    steps_per_epoch = loader_steps if config.max_steps_per_epoch <= 0 else min(loader_steps, config.max_steps_per_epoch)
    if config.max_steps <= 0:
        return steps_per_epoch, steps_per_epoch * num_epochs, num_epochs, 1
    passes = -(-config.max_steps // steps_per_epoch)  # ceil
    return steps_per_epoch, config.max_steps, passes, max(1, passes // max(1, num_epochs))


def build_optimizer(
    config: FinetuneConfig, model: usvcl_hf.UsvclForImageClassification, mask_head: torch.nn.Module | None = None
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; the backbone's at `learning_rate * backbone_lr_scale`, the heads' (and
    the training-only `mask_head`'s) at `learning_rate` (the schedule scales both)."""
    backbone = {id(parameter) for parameter in model.usvcl.backbone.parameters()}
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    extra = list(mask_head.parameters()) if mask_head is not None else []
    groups = [
        {"params": [p for p in trainable if id(p) not in backbone] + extra, "lr": config.learning_rate},
        {"params": [p for p in trainable if id(p) in backbone], "lr": config.learning_rate * config.backbone_lr_scale},
    ]
    return torch.optim.AdamW([group for group in groups if group["params"]], lr=config.learning_rate,
                             weight_decay=config.weight_decay)


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: list[float] | None, smoothing: float
) -> torch.Tensor:
    """Class-weighted cross-entropy of `logits (B, 2)` with label smoothing `smoothing` (0 = the model's own loss):
    targets (1 - e) one-hot + e / 2."""
    weight = torch.tensor(weights, dtype=torch.float32, device=logits.device) if weights is not None else None
    return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight, label_smoothing=smoothing)


def build_mask_head(config: FinetuneConfig, model: usvcl_hf.UsvclForImageClassification) -> torch.nn.Conv2d | None:
    """The training-only lesion-mask head (a 1x1 convolution, features -> one logit per cell of the last feature
    map) when `mask_loss_weight` > 0, else None. Not saved: the exported classifier is the same without it."""
    if config.mask_loss_weight <= 0:
        return None
    return torch.nn.Conv2d(model.usvcl.num_features, 1, kernel_size=1)


def mask_loss(mask_head: torch.nn.Module, feature_map: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Auxiliary lesion-mask loss: binary cross-entropy between `mask_head(feature_map)` `(B, 1, h, w)` logits and
    `targets (B, 1, h, w)`, the lesion share of each cell in [0, 1] (soft targets), averaged over the cells of the
    rows that have a mask (rows with NaN targets are left out; 0 when no row has one)."""
    logits = mask_head(feature_map).float()  # (B, F, h, w) -> (B, 1, h, w)
    known = torch.isfinite(targets).flatten(1).all(dim=1)  # (B,)
    if not bool(known.any()):
        return logits.sum() * 0.0  # keeps the head in the graph (DDP expects every parameter to get a gradient)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known].float())


def make_ema(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """Exponential moving average of the weights and buffers, w_ema <- decay w_ema + (1 - decay) w (None if 0)."""
    if decay <= 0:
        return None
    return torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True
    )


def train_epoch(
    accelerator: Accelerator, config: FinetuneConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scheduler: Any, train_loader: DataLoader, train_set: SquareDataset, steps_per_epoch: int,
    weights: list[float] | None, ema: torch.optim.swa_utils.AveragedModel | None,
    mask_head: torch.nn.Module | None = None,
) -> None:
    """One pass over the (epoch-seeded) training loader, at most `steps_per_epoch` optimizer steps; the loss is the
    classification loss plus `mask_loss_weight` times the lesion-mask loss when there is a `mask_head`."""
    for step, batch in enumerate(train_loader):
        if step >= steps_per_epoch:
            break
        output = model(pixel_values=train_set.pixel_values(batch))
        loss = classification_loss(output.logits, batch["labels"], weights, config.label_smoothing)  # logits (B, 2)
        if mask_head is not None:
            feature_map = output.last_hidden_state  # (B, F, h, w)
            targets = train_set.mask_targets(batch, tuple(feature_map.shape[-2:]))  # (B, 1, h, w)
            loss = loss + config.mask_loss_weight * mask_loss(mask_head, feature_map, targets)
        backward_and_step(accelerator, model, loss, optimizer, scheduler, config.max_grad_norm)
        if ema is not None:
            ema.update_parameters(accelerator.unwrap_model(model))


@dataclasses.dataclass
class TrainingRun:
    """Everything `train_model`'s steps share: the prepared model, optimiser, schedule and loaders of one model."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_set: SquareDataset
    train_loader: DataLoader
    val_loader: DataLoader | None
    weights: torch.Tensor | None  # class weights of the loss
    ema: torch.optim.swa_utils.AveragedModel | None
    mask_head: torch.nn.Module | None
    steps_per_epoch: int
    total_steps: int
    passes: int
    validate_every: int


def prepare_run(
    accelerator: Accelerator,
    config: FinetuneConfig,
    data: LabeledData,
    processor: usvcl_hf.UsvclImageProcessor,
    train_rows: np.ndarray,
    val_rows: np.ndarray | None,
    num_epochs: int,
    seed: int,
) -> TrainingRun:
    """A fresh model with its loaders, optimiser, schedule and EMA, seeded and passed through one `prepare()`."""
    set_seed(seed)
    weights = class_weights(data.labels[train_rows], len(data.class_names)) if config.class_weighted_loss else None
    model = build_classifier(config, processor.image_size, weights, data.id2label)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_set = SquareDataset(data, train_rows, processor, config.augment, seed,
                              AUGMENT_POLICIES[config.augment_policy])
    train_loader = make_loader(train_set, config.batch_size, seed, config.num_workers)
    mask_head = build_mask_head(config, model)
    optimizer = build_optimizer(config, model, mask_head)
    model, optimizer, train_loader, *prepared_head = accelerator.prepare(
        model, optimizer, train_loader, *([mask_head] if mask_head is not None else [])
    )
    steps_per_epoch, total_steps, passes, validate_every = step_schedule(config, len(train_loader), num_epochs)
    scheduler = accelerator.prepare(
        build_scheduler(optimizer, config.warmup_steps, total_steps, config.min_lr / config.learning_rate,
                        accelerator.num_processes)
    )
    val_loader = None
    if val_rows is not None:
        val_loader = accelerator.prepare(make_loader(SquareDataset(data, val_rows, processor, False, seed),
                                                     config.eval_batch_size, None, config.num_workers))
    ema = make_ema(accelerator.unwrap_model(model), config.ema_decay)
    return TrainingRun(model, optimizer, scheduler, train_set, train_loader, val_loader, weights, ema,
                       prepared_head[0] if prepared_head else None, steps_per_epoch, total_steps, passes,
                       validate_every)


def finished_model(
    accelerator: Accelerator, run: TrainingRun, best_weights: dict[str, torch.Tensor] | None
) -> usvcl_hf.UsvclForImageClassification:
    """The trained model in eval mode and contiguous layout, holding `best_weights` (else the EMA weights when there
    are some, else the last weights)."""
    if run.ema is not None and best_weights is None:
        best_weights = cpu_state_dict(run.ema.module)
    unwrapped = accelerator.unwrap_model(run.model).to(memory_format=torch.contiguous_format)
    if best_weights is not None:
        unwrapped.load_state_dict(best_weights)
    unwrapped.eval()
    accelerator.free_memory()
    return unwrapped


def train_model(
    accelerator: Accelerator, config: FinetuneConfig, run: TrainingRun, val_labels: np.ndarray | None,
    description: str,
) -> tuple[usvcl_hf.UsvclForImageClassification, int, float]:
    """Train `run`'s fresh model (`prepare_run`) for every pass; with `val_labels` (of its validation loader's rows),
    keep the epoch of best validation AUC (of the EMA weights when `ema_decay` > 0, which are then the ones
    returned). Returns (model, epoch, AUC)."""
    best_auc, best_epoch, best_weights = -np.inf, run.passes, None
    run.model.train()
    for epoch in tqdm(range(1, run.passes + 1), desc=description, disable=not accelerator.is_main_process):
        run.train_set.set_epoch(epoch)
        run.train_loader.set_epoch(epoch)
        train_epoch(accelerator, config, run.model, run.optimizer, run.scheduler, run.train_loader, run.train_set,
                    min(run.steps_per_epoch, run.total_steps - (epoch - 1) * run.steps_per_epoch), run.weights,
                    run.ema, run.mask_head)
        evaluated = run.ema.module if run.ema is not None else accelerator.unwrap_model(run.model)
        if run.val_loader is not None and (epoch % run.validate_every == 0 or epoch == run.passes):
            val_logits = predict_logits(accelerator, evaluated, run.val_loader, len(val_labels), config.tta_flip)
            auc = evaluation.auc(val_labels, evaluation.positive_probability(val_logits))
            if best_weights is None or (np.isfinite(auc) and auc > best_auc):
                best_auc, best_epoch = auc, epoch
                best_weights = cpu_state_dict(evaluated)
    return finished_model(accelerator, run, best_weights), best_epoch, float(best_auc)


def evaluate_rows(
    accelerator: Accelerator,
    config: FinetuneConfig,
    model: torch.nn.Module,
    data: LabeledData,
    processor: usvcl_hf.UsvclImageProcessor,
    rows: np.ndarray,
) -> np.ndarray:
    """`(len(rows), 2)` uncalibrated logits of `rows` (model config temperature must be 1)."""
    loader = accelerator.prepare(
        make_loader(SquareDataset(data, rows, processor, False, config.seed), config.eval_batch_size, None,
                    config.num_workers)
    )
    logits = predict_logits(accelerator, model.to(accelerator.device), loader, len(rows), config.tta_flip)
    accelerator.free_memory()
    return logits


def run_fold(
    accelerator: Accelerator,
    config: FinetuneConfig,
    data: LabeledData,
    processor: usvcl_hf.UsvclImageProcessor,
    fold: Fold,
    train_rows: np.ndarray,
    description: str,
) -> FoldOutcome:
    """Train a fresh model on `train_rows`, select/calibrate/threshold on `fold.val`, predict `fold.test` (the
    fold's own squares of its rows: `LabeledData.for_fold`)."""
    config, data = for_fold(config, fold.number), data.for_fold(fold.number)
    run = prepare_run(accelerator, config, data, processor, train_rows, fold.val, config.num_epochs,
                      seed=config.seed + SEED_STREAM_FOLD * 1000 + fold.number)
    model, best_epoch, val_auc = train_model(accelerator, config, run, data.labels[fold.val], description)
    val_logits = evaluate_rows(accelerator, config, model, data, processor, fold.val)
    temperature, bias = evaluation.fit_calibration(val_logits, data.labels[fold.val])
    threshold = evaluation.youden_threshold(
        data.labels[fold.val], evaluation.positive_probability(val_logits, temperature, bias)
    )
    test_logits = evaluate_rows(accelerator, config, model, data, processor, fold.test)
    if config.save_fold_models and accelerator.is_main_process:
        fold_dir = Path(config.output_dir) / f"fold_{fold.number}" / "model"
        save_model(accelerator.unwrap_model(model), processor, fold_dir, threshold, (temperature, bias), config)
    accelerator.wait_for_everyone()
    return FoldOutcome(best_epoch, threshold, temperature, bias, test_logits, val_auc, val_logits)


def final_split(config: FinetuneConfig, data: LabeledData) -> tuple[np.ndarray, np.ndarray]:
    """The final model's training rows and its patient-grouped holdout (where its calibration is fitted): all rows,
    or with `split` cross_device the training side's scanners only."""
    all_rows = np.arange(len(data.labels))
    if config.split == "cross_device":
        all_rows = cross_device_sides(data.devices, data.patient_ids)[0]
    return inner_split(all_rows, data.labels, data.patient_ids, config.final_holdout_fraction,
                       config.seed + SEED_STREAM_FINAL)


def train_final_model(
    accelerator: Accelerator, config: FinetuneConfig, data: LabeledData, processor: usvcl_hf.UsvclImageProcessor,
    epochs: int, threshold: float, output_dir: Path,
) -> tuple[Path, tuple[float, float]]:
    """Train on all labelled rows but a patient-grouped holdout, fit the calibration (temperature, bias) on that
    holdout, save; returns the folder and the calibration."""
    train_rows, holdout_rows = final_split(config, data)
    final_config = for_fold(config, "all")
    run = prepare_run(accelerator, final_config, data, processor, train_rows, None, epochs,
                      seed=config.seed + SEED_STREAM_FINAL)
    model, _, _ = train_model(accelerator, final_config, run, None, "final model")
    holdout_logits = evaluate_rows(accelerator, config, model, data, processor, holdout_rows)
    calibration = evaluation.fit_calibration(holdout_logits, data.labels[holdout_rows])
    final_dir = output_dir / "final_model"
    if accelerator.is_main_process:
        save_model(model, processor, final_dir, threshold, calibration, config)
    accelerator.wait_for_everyone()
    return final_dir, calibration

