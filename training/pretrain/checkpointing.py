"""Resumable pretraining state: `TrainState` and `step_N` checkpoints written atomically and pruned.

A checkpoint is Accelerate's `save_state` (model, optimizer, scheduler, RNG states) plus `trainer_state.json`
(`TrainState`) and, when selection has kept one, `best_model.safetensors`. It is written into a hidden folder and
renamed to `checkpoints/step_N`, so a killed run never leaves a half checkpoint; only the last `keep` are kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from safetensors.torch import load_file, save_file

from training.atomic import write_json_atomic

LOGGER = get_logger(__name__)
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step_"
TEMP_PREFIX = ".tmp_"  # the same name on every process (a per-process suffix would split a multi-process save)
STATE_FILE = "trainer_state.json"
BEST_WEIGHTS_FILE = "best_model.safetensors"


@dataclasses.dataclass
class TrainState:
    """Everything besides model/optimizer/scheduler/RNG that a resumed run needs (saved as JSON)."""

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed (per process)
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    best_score: float | None = None  # higher is better (negative epoch loss, or held-out clip retrieval mAP)
    best_step: int | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def checkpoint_steps(checkpoint_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in `checkpoint_dir`, ascending."""
    if not checkpoint_dir.is_dir():
        return []
    names = [path.name for path in checkpoint_dir.iterdir() if path.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(int(name.removeprefix(CHECKPOINT_PREFIX)) for name in names)


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: Path,
    state: TrainState,
    best_weights: dict[str, torch.Tensor] | None,
    keep: int,
) -> Path:
    """`save_state` into a temporary folder, add trainer state + best weights, rename to `step_N`, prune old ones."""
    checkpoint_dir = output_dir / CHECKPOINT_DIR
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
    steps = checkpoint_steps(output_dir / CHECKPOINT_DIR)
    if not steps:
        LOGGER.info("--resume: no checkpoint in %s; starting from scratch.", output_dir / CHECKPOINT_DIR)
        return None
    path = output_dir / CHECKPOINT_DIR / f"{CHECKPOINT_PREFIX}{steps[-1]}"
    accelerator.load_state(str(path))
    state = TrainState(**json.loads((path / STATE_FILE).read_text()))
    best_path = path / BEST_WEIGHTS_FILE
    best_weights = load_file(str(best_path)) if best_path.exists() else None
    LOGGER.info("Resumed from %s (step %d, epoch %d).", path, state.global_step, state.epoch)
    return state, best_weights


__all__ = ["TrainState", "checkpoint_steps", "load_checkpoint", "save_checkpoint"]
