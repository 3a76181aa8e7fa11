"""Fine-tuning step speed by numeric precision and memory layout, side by side in one run.

    python -m benchmarks.finetune_precision [--backbone resnet18] [--image-size 224] [--batch-size 32] [--rounds 3]

One `UsvclForImageClassification` training step (forward, cross-entropy, backward, AdamW) on a random batch of
grey images, in four settings: float32 / bf16 autocast, each with NCHW (contiguous) and NHWC (channels_last)
weights. bf16 autocast is what `--mixed-precision bf16` gives through Accelerate (`torch.autocast` on the CPU);
`--channels-last` is the fine-tuning option of the same name. Every setting starts from the same seeded weights;
rounds are interleaved and the fastest round per setting is reported (load from other processes hits all alike).
Prints a Markdown table: images/s and the speed-up against float32 NCHW.
"""

from __future__ import annotations

import argparse
import platform
import time
from contextlib import nullcontext

import torch

from benchmarks.timing import timed_rounds
from usvcl_hf import UsvclConfig, UsvclForImageClassification

SEED = 0
SETTINGS = {  # name -> (bf16 autocast, channels_last)
    "float32, NCHW": (False, False),
    "float32, channels_last": (False, True),
    "bf16 autocast, NCHW": (True, False),
    "bf16 autocast, channels_last": (True, True),
}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest is reported")
    return parser.parse_args()


def build_step(args: argparse.Namespace, bf16: bool, channels_last: bool):
    """A closure that runs one training step in the given setting (same seeded weights for every setting)."""
    torch.manual_seed(SEED)
    model = UsvclForImageClassification(UsvclConfig(backbone=args.backbone, image_size=args.image_size)).train()
    pixel_values = torch.randn(args.batch_size, 1, args.image_size, args.image_size)  # (B, 1, H, W)
    labels = torch.randint(0, 2, (args.batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad()
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with context:
            loss = model(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    """Time every setting and print the table."""
    args = parse_args()
    started = time.perf_counter()
    steps = {name: build_step(args, *flags) for name, flags in SETTINGS.items()}
    times = timed_rounds({name: lambda step=step: [step() for _ in range(args.steps)] for name, step in steps.items()},
                         args.rounds)
    seconds = {name: min(rounds) / args.steps for name, rounds in times.items()}  # fastest round, per step
    reference = seconds["float32, NCHW"]
    print(f"{args.backbone} at {args.image_size} px, batch {args.batch_size}, {args.steps} steps x {args.rounds} "
          f"rounds; torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}")
    print("\n| setting | s / step (fastest round) | images / s | speed-up vs float32 NCHW |")
    print("|---|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.3f} | {args.batch_size / value:.1f} | {reference / value:.2f}x |")
    print(f"\nWall time {time.perf_counter() - started:.0f} s. Output: this table (stdout).")


if __name__ == "__main__":
    main()
