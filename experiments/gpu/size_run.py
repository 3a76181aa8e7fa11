"""Time one pretraining step and one fine-tuning step here, then size a time-boxed GPU run from them.

A lent GPU comes for minutes, so `run_paper_scale.sh` fixes the recipe (backbone, image size, P, N, batch sizes)
in advance and derives only the *length* from the measured step times: the pretraining steps that let
`--pretrain-arms` concurrent runs finish in `--pretrain-share` of the budget, and the fine-tuning epochs that let
`--finetune-arms` x `--folds` folds finish in `--finetune-share`. No data is read; nothing here sees a test fold.
Steps run in bf16 autocast on a GPU and in float32 on a CPU (a CPU smoke run; bf16 is emulated, slowly, on CPUs
without AVX-512 BF16 or AMX).
Prints shell assignments (STEPS=..., EPOCHS=..., MONITOR_EVERY=...) and writes the timings as JSON.

    python experiments/gpu/size_run.py --budget-s 420 --output runs/sizing.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

import usvcl_hf
from training.config import PretrainConfig
from training.pretrain import train as pretrain

WARMUP_STEPS = 3
TIMED_STEPS = 5
FINETUNE_BATCH = 32
EVAL_OVERHEAD = 1.25  # validation + test forward passes and fold set-up, as a share of an epoch's training time
MONITOR_POINTS = 5
STEP_LIMITS = (50, 2000)
EPOCH_LIMITS = (4, 30)


def seconds_per_step(step: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Mean time of `TIMED_STEPS` optimiser-free forward+backward steps after `WARMUP_STEPS`."""
    for _ in range(WARMUP_STEPS):
        step().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(TIMED_STEPS):
        step().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / TIMED_STEPS


def pretrain_step(config: PretrainConfig, device: torch.device) -> Callable[[], torch.Tensor]:
    """A shared-negatives pretraining loss on random frames of the configured shape."""
    model = pretrain.build_model(config).to(device)
    model_config = config.model
    size, anchors = model_config.image_size, config.batch_size
    batch = {
        "pixel_values": torch.randn(anchors, 1 + model_config.num_positives, model_config.in_chans, size, size,
                                    device=device),
        "negative_pixel_values": torch.randn(model_config.num_negatives, model_config.in_chans, size, size,
                                             device=device),
        "negative_mask": torch.ones(anchors, model_config.num_negatives, dtype=torch.bool, device=device),
    }

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return pretrain.forward_batch(model, batch, model_config.num_positives)

    return step


def finetune_step(config: PretrainConfig, device: torch.device) -> Callable[[], torch.Tensor]:
    """A classification loss on a random batch of `FINETUNE_BATCH` images."""
    model_config = usvcl_hf.UsvclConfig(backbone=config.model.backbone, in_chans=config.model.in_chans,
                                        image_size=config.model.image_size)
    model = usvcl_hf.UsvclForImageClassification(model_config).to(device)
    size = config.model.image_size
    pixels = torch.randn(FINETUNE_BATCH, config.model.in_chans, size, size, device=device)
    labels = torch.randint(0, 2, (FINETUNE_BATCH,), device=device)

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model(pixel_values=pixels, labels=labels).loss

    return step


def clip(value: float, limits: tuple[int, int]) -> int:
    """`value` rounded down into `limits`."""
    return int(min(max(value, limits[0]), limits[1]))


def main(argv: list[str] | None = None) -> None:
    """Time both steps, derive STEPS / EPOCHS / MONITOR_EVERY, print them as shell assignments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, required=True, help="seconds for pretraining + fine-tuning")
    parser.add_argument("--pretrain-share", type=float, default=0.45)
    parser.add_argument("--finetune-share", type=float, default=0.40)
    parser.add_argument("--pretrain-arms", type=int, default=3, help="pretraining runs sharing the GPU")
    parser.add_argument("--finetune-arms", type=int, default=3, help="cross-validations sharing the GPU")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=1200, help="training images per fold")
    parser.add_argument("--backbone", default="densenet121")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16, help="anchors per pretraining step")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = PretrainConfig.from_values(backbone=args.backbone, image_size=args.image_size,
                                        batch_size=args.batch_size, shared_negatives=True)  # P, N: the paper's
    pretrain_s = seconds_per_step(pretrain_step(config, device), device)
    finetune_s = seconds_per_step(finetune_step(config, device), device)
    steps = clip(args.pretrain_share * args.budget_s / (args.pretrain_arms * pretrain_s), STEP_LIMITS)
    epoch_s = EVAL_OVERHEAD * args.train_images / FINETUNE_BATCH * finetune_s
    epochs = clip(args.finetune_share * args.budget_s / (args.finetune_arms * args.folds * epoch_s), EPOCH_LIMITS)
    sizing = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "pretrain_step_s": pretrain_s, "pretrain_images_per_step": pretrain.images_per_batch(config),
        "finetune_step_s": finetune_s, "finetune_batch": FINETUNE_BATCH,
        "steps": steps, "epochs": epochs, "monitor_every": max(1, steps // MONITOR_POINTS), "args": vars(args),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(sizing, indent=2, default=str))
    print(f"STEPS={steps} EPOCHS={epochs} MONITOR_EVERY={sizing['monitor_every']}")


if __name__ == "__main__":
    main()
