"""CPU cost of the lesion model next to the classifier, on the same frames (issue #16).

On `--frames` synthetic grey frames of 320 x 240 (speckle and a bright disc), timed interleaved after one warm-up
(`benchmarks.timing.timed_rounds`), per measurement the minimum and median over `--repeats` rounds:
- classifier: `frame_malignancy` (preprocessing + batched forward, batches of 16), what `predict_clip` runs;
- lesion model: `frame_lesion_probabilities` (the same, for the lesion segmenter);
- predict_clip without and with the lesion model, on the frames as stills (crop off).
The headline is the ratio lesion model / classifier and predict_clip with / without (minimum over rounds).

Usage:
    python -m benchmarks.lesion_cost [--model DIR] [--lesion-model DIR | --lesion-backbone tf_efficientnet_lite0]
                                     [--lesion-size 224] [--frames 32] [--repeats 3] [--threads N]
Without --model, the bundled default classifier when present (else a random DenseNet121 at 224 px); without
--lesion-model, a randomly initialised segmenter of `--lesion-backbone` (the cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

import app
from benchmarks.timing import timed_rounds
from usvcl_hf import (
    LesionConfig,
    LesionSegmentationModel,
    UsvclConfig,
    UsvclForImageClassification,
    UsvclImageProcessor,
)
from usvcl_hf.runtime.clip_prediction import frame_malignancy, load_model, predict_clip
from usvcl_hf.runtime.lesion import frame_lesion_probabilities, load_lesion_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / app.DEFAULT_MODEL
FRAME_HEIGHT, FRAME_WIDTH = 240, 320
SEED = 0


def synthetic_frames(count: int) -> list[np.ndarray]:
    """`count` seeded (240, 320) uint8 frames: speckle with a bright disc that moves."""
    rng = np.random.default_rng(SEED)
    rows, columns = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH]
    frames = []
    for index in range(count):
        frame = rng.gamma(8.0, 60 / 8.0, (FRAME_HEIGHT, FRAME_WIDTH)).clip(0, 255)
        centre = (120 + 40 * np.sin(index / 5), 160 + 60 * np.cos(index / 5))
        frame[(rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= 35**2] = 210
        frames.append(frame.astype(np.uint8))
    return frames


def classifier(args: argparse.Namespace) -> tuple[torch.nn.Module, UsvclImageProcessor, str]:
    """The classifier to compare with, and its name."""
    if args.model or DEFAULT_MODEL.is_dir():
        path = args.model or str(DEFAULT_MODEL)
        return (*load_model(path), Path(path).name)
    torch.manual_seed(SEED)
    config = UsvclConfig(backbone="densenet121", image_size=224)
    return (UsvclForImageClassification(config).eval(), UsvclImageProcessor(image_size=224),
            "random densenet121 at 224 px")


def lesion_model(args: argparse.Namespace) -> tuple[torch.nn.Module, UsvclImageProcessor, str]:
    """The lesion segmenter, and its name."""
    if args.lesion_model:
        return (*load_lesion_model(args.lesion_model), Path(args.lesion_model).name)
    torch.manual_seed(SEED)
    model = LesionSegmentationModel(LesionConfig(backbone=args.lesion_backbone, image_size=args.lesion_size)).eval()
    return model, UsvclImageProcessor(image_size=args.lesion_size), (
        f"random {args.lesion_backbone} U-Net at {args.lesion_size} px")


def report(times: dict[str, list[float]], names: tuple[str, str], frame_count: int) -> str:
    """Markdown table of the timings and the two ratios."""
    lines = ["| measurement | min (s) | median (s) | ms per frame (min) |", "|---|---|---|---|"]
    for name, values in times.items():
        lines.append(f"| {name} | {min(values):.3f} | {statistics.median(values):.3f} | "
                     f"{1000 * min(values) / frame_count:.1f} |")
    first, second = list(times)[:2], list(times)[2:]
    lines += ["", f"Lesion model / classifier: {min(times[first[1]]) / min(times[first[0]]):.2f}x; "
              f"predict_clip with / without the lesion model: {min(times[second[1]]) / min(times[second[0]]):.2f}x "
              f"(classifier: {names[0]}; lesion model: {names[1]})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Time, then print the table with torch version, threads and machine."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="classifier folder or Hub id (default: the bundled default model)")
    parser.add_argument("--lesion-model", help="lesion segmenter folder (default: a random one)")
    parser.add_argument("--lesion-backbone", default="tf_efficientnet_lite0", help="backbone of the random one")
    parser.add_argument("--lesion-size", type=int, default=224, help="input size of the random one")
    parser.add_argument("--frames", type=int, default=32, help="frames per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds after the warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor, model_name = classifier(args)
    segmenter, segmenter_processor, segmenter_name = lesion_model(args)
    frames = synthetic_frames(args.frames)
    with torch.inference_mode():
        times = timed_rounds({
            "classifier (frame_malignancy)": lambda: frame_malignancy(model, processor, frames),
            "lesion model (frame_lesion_probabilities)": lambda: frame_lesion_probabilities(
                segmenter, segmenter_processor, frames),
            "predict_clip, no lesion model": lambda: predict_clip(model, processor, frames, crop=False),
            "predict_clip, with the lesion model": lambda: predict_clip(
                model, processor, frames, crop=False, lesion_model=segmenter, lesion_processor=segmenter_processor),
        }, args.repeats)
    print(f"{args.frames} frames of {FRAME_WIDTH}x{FRAME_HEIGHT}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {platform.machine()} {platform.processor() or 'cpu'}")
    print(report(times, (model_name, segmenter_name), args.frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
