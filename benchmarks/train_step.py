"""Training images/s of the full pretraining step (real sampler + loader + model) against the bare model step.

    python -m benchmarks.train_step --store-paths stores/covid_blues stores/pocus --steps 10

Both use the same model, batch shape and optimizer; the bare step feeds one random tensor of the batch's shape.
Prints a Markdown table with the ratio (target >= 0.9: the input pipeline costs at most 10%).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

import usvcl_hf
from training.config import PretrainConfig
from training.pretrain.train import build_dataloader, build_dataset, build_model, forward_batch, images_per_batch

DEFAULT_STEPS = 10
DEFAULT_WARMUP = 2
DEFAULT_ROUNDS = 2
TARGET_RATIO = 0.9


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store-paths", nargs="+", required=True, help="frame stores (datasets.save_to_disk)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-positives", type=int, default=4)
    parser.add_argument("--num-negatives", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help="alternating full/bare rounds; the fastest of each mode is reported (shared machines)")
    return parser.parse_args()


def timed_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches, steps: int, warmup: int,
                num_positives: int) -> float:
    """Seconds for `steps` optimizer steps after `warmup` untimed ones."""
    started = 0.0
    for index, batch in enumerate(itertools.islice(batches, warmup + steps)):
        if index == warmup:
            started = time.perf_counter()
        loss = forward_batch(model, batch, num_positives)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - started


def main() -> None:
    """Run both modes and print the table."""
    args = parse_args()
    config = PretrainConfig(
        store_paths=args.store_paths, backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size,
        num_positives=args.num_positives, num_negatives=args.num_negatives, num_workers=args.num_workers,
    )
    torch.manual_seed(config.seed)
    model = build_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    processor = usvcl_hf.UsvclImageProcessor(image_size=config.image_size, in_chans=config.in_chans)
    dataset = build_dataset(config, processor)
    _ = dataset.cache  # decode the stores once, as a training run does before its first step
    loader_batches = itertools.chain.from_iterable(itertools.repeat(build_dataloader(dataset, config)))
    shape = (config.batch_size, 1 + config.num_positives + config.num_negatives, config.in_chans,
             config.image_size, config.image_size)
    random_batch = torch.randn(shape)  # (B, 1+P+N, C, S, S)
    full_s, bare_s = float("inf"), float("inf")
    for _ in range(args.rounds):
        full_s = min(full_s, timed_steps(model, optimizer, loader_batches, args.steps, args.warmup,
                                         config.num_positives))
        bare_s = min(bare_s, timed_steps(model, optimizer, itertools.repeat(random_batch), args.steps, args.warmup,
                                         config.num_positives))
    frames = images_per_batch(config) * args.steps
    full, bare = frames / full_s, frames / bare_s
    print(f"{args.backbone} {args.image_size}px, B={args.batch_size}, P={args.num_positives}, "
          f"N={args.num_negatives} ({images_per_batch(config)} frames/step), {args.steps} timed steps, "
          f"{torch.get_num_threads()} threads\n")
    print("| step | images/s |\n|---|---|")
    print(f"| full (sampler + loader + model) | {full:.1f} |")
    print(f"| bare model (random tensors) | {bare:.1f} |")
    print(f"| ratio full / bare (target >= {TARGET_RATIO}) | {full / bare:.2f} |")


if __name__ == "__main__":
    main()
