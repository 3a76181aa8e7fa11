"""Data-loader throughput next to the training throughput it has to feed.

Measures (1) frames/s decoded by read_clip (real COVID-BLUES clips when ../shared/data exists, else synthetic
clips), (2) triplet items/s and images/s (= items * (1+P+N)) from a store through a DataLoader, per-item
negatives and shared negatives, and (3) densenet121 (timm, in_chans=1) training images/s (forward + backward),
and prints a Markdown table with the ratios.

    python -m benchmarks.loader --store stores/covid_blues
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from training.pretrain.sampler import (
    DEFAULT_NUM_NEGATIVES,
    DEFAULT_NUM_POSITIVES,
    SharedNegativesCollator,
    TripletDataset,
    collate_triplets,
)
from usvcl_hf.runtime.video import read_clip

REAL_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "covid_blues_lus_videos" / "lus_videos"
IMAGE_SIZE = 224
MEAN, STD = (0.5,), (0.5,)
SYNTHETIC_CLIPS = 4
SYNTHETIC_PATIENTS = {"a": 3, "b": 3, "c": 3}


def clip_paths(limit: int, scratch: Path) -> tuple[list[Path], str]:
    """Real clips when available, else freshly written synthetic ones."""
    if REAL_CLIPS.is_dir():
        return sorted(REAL_CLIPS.glob("*.mp4"))[:limit], f"{limit} COVID-BLUES clips (350x350 H.264)"
    from training import synthetic

    paths = [synthetic.write_video(scratch / f"clip{index}.mp4") for index in range(SYNTHETIC_CLIPS)]
    return paths, f"{SYNTHETIC_CLIPS} synthetic clips (64x48)"


def decode_rate(paths: list[Path]) -> float:
    """Frames per second decoded (all frames, greyscale) on one process."""
    started = time.perf_counter()
    frames = sum(len(read_clip(path, frame_stride=1).frames) for path in paths)
    return frames / (time.perf_counter() - started)


def load_store(store_path: str | None):
    """The store to sample from (a tiny synthetic one when none is given)."""
    import datasets

    if store_path:
        return datasets.load_from_disk(store_path), store_path
    from training import synthetic

    return synthetic.make_frame_store(SYNTHETIC_PATIENTS, frames_per_video=8, size=256), "synthetic store"


def loader_rate(dataset: TripletDataset, batch_size: int, batches: int, workers: int, collate) -> float:
    """Items per second through a DataLoader (after one warm-up batch that decodes the cache)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         collate_fn=collate, generator=torch.Generator().manual_seed(0))
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - started)


def training_rate(batch_size: int, steps: int) -> float:
    """densenet121 (in_chans=1, 224 px) training images/s: forward + backward + SGD step."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("densenet121", pretrained=False, in_chans=1, num_classes=0)
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    images = torch.randn(batch_size, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        optimiser.zero_grad()
        model(images).square().mean().backward()
        optimiser.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="store from training.prepare_data (default: a synthetic store)")
    parser.add_argument("--clips", type=int, default=20, help="real clips to decode")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=4, help="triplet items per batch")
    parser.add_argument("--batches", type=int, default=5, help="timed batches")
    parser.add_argument("--train-batch", type=int, default=8, help="densenet121 images per step")
    parser.add_argument("--train-steps", type=int, default=3, help="timed densenet121 steps")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        paths, clips_label = clip_paths(args.clips, Path(scratch))
        frames_per_s = decode_rate(paths)
    store, store_label = load_store(args.store)
    views = 1 + DEFAULT_NUM_POSITIVES + DEFAULT_NUM_NEGATIVES
    options = {"image_size": IMAGE_SIZE, "mean": MEAN, "std": STD, "seed": 0}
    items_per_s = loader_rate(TripletDataset(store, **options), args.batch_size, args.batches, args.workers,
                              collate_triplets)
    shared = TripletDataset(store, shared_negatives=True, **options)
    shared_items_per_s = loader_rate(shared, args.batch_size, args.batches, args.workers,
                                     SharedNegativesCollator(shared, DEFAULT_NUM_NEGATIVES))
    train_images_per_s = training_rate(args.train_batch, args.train_steps)
    images_per_item = views
    shared_images_per_item = 1 + DEFAULT_NUM_POSITIVES + DEFAULT_NUM_NEGATIVES / args.batch_size
    print(f"| measurement ({IMAGE_SIZE} px, P={DEFAULT_NUM_POSITIVES}, N={DEFAULT_NUM_NEGATIVES}, "
          f"batch {args.batch_size}, {args.workers} workers) | rate | vs densenet121 training |")
    print("|---|---|---|")
    print(f"| read_clip decode, {clips_label}, 1 process | {frames_per_s:.0f} frames/s | "
          f"{frames_per_s / train_images_per_s:.1f}x |")
    print(f"| triplet items, per-item negatives ({store_label}) | {items_per_s:.2f} items/s = "
          f"{items_per_s * images_per_item:.0f} images/s | {items_per_s * images_per_item / train_images_per_s:.1f}x |")
    print(f"| triplet items, shared negatives (M={DEFAULT_NUM_NEGATIVES} per batch) | {shared_items_per_s:.2f} "
          f"items/s = {shared_items_per_s * shared_images_per_item:.0f} images/s | "
          f"{shared_items_per_s * shared_images_per_item / train_images_per_s:.1f}x |")
    print(f"| densenet121 training (timm, in_chans=1, batch {args.train_batch}, fwd+bwd+SGD) | "
          f"{train_images_per_s:.1f} images/s | 1.0x |")
    print(f"\nencoder images per anchor: {images_per_item} per-item vs {shared_images_per_item:.2f} shared "
          f"({images_per_item / shared_images_per_item:.1f}x less encoder compute per anchor at batch "
          f"{args.batch_size})")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
