"""Demo latency: the Gradio demo's end-to-end time for one clip against the bare model forward on the same frames.

Makes a synthetic clip on the fly (default 10 s at 25 fps, 320 x 240, H.264), then, in one run and on the same
kept frames (app defaults: stride 5, crop on, the model's aggregation):
- demo end-to-end: `app.run_analysis`, exactly what the demo's button runs (decoding, imaging-region crop,
  preprocessing, batched inference, aggregation, Grad-CAM of the most suspicious frame, output formatting);
- bare forward: `model(pixel_values)` on the already preprocessed frames, batches of 16, under inference_mode;
- a breakdown: decoding + crop, preprocessing, `predict_clip`, Grad-CAM;
- the "before" of each inference rewrite the loaders apply (`usvcl_hf.runtime.inference_prep`): the bare forward and the
  two-view demo with the same models loaded with `fold_batchnorm=False` (BatchNorm folding,
  `usvcl_hf.runtime.batchnorm_folding`), and with `static_padding=False` (TensorFlow-"same" padding inside the
  convolution, `usvcl_hf.runtime.static_padding`).
After one warm-up of everything, `--repeats` rounds each time all measurements back to back (interleaved, so
load from other processes hits them alike). The report gives the minimum (least disturbed) and the median per
measurement; the headline ratio is min(demo) / min(bare), with the median of the per-round ratios beside it.
Prints a Markdown table with the ratio (target <= 1.3) and a breakdown, and the demo with the bundled lesion model
and with the lesion and lesion-crop models (two views, what `python app.py` runs when both are bundled), then the
gain of each rewrite and issue #15's target (what `python app.py` runs, a 10 s clip in <= 1.0 s).

Usage:
    python -m benchmarks.demo_latency [--model DIR_OR_HUB_ID | --random-model --backbone resnet18] [--image-size 224]
                                      [--seconds 10] [--fps 25 | --clip PATH] [--stride 5] [--repeats 3]
Without --model, uses the default demo model when it exists (unless --random-model), else a random `--backbone`
classifier.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import app
from benchmarks.timing import timed_rounds
from usvcl_hf import UsvclConfig, UsvclForImageClassification, UsvclImageProcessor
from usvcl_hf.lesion_crop import lesion_crops
from usvcl_hf.runtime.clip_prediction import (
    DEFAULT_BATCH_SIZE,
    frame_scores,
    load_model,
    predict_clip,
    read_source,
)
from usvcl_hf.runtime.lesion import frame_lesions, load_lesion_model
from usvcl_hf.runtime.saliency import gradcam_heatmap

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.3
CLIP_WIDTH, CLIP_HEIGHT = 320, 240
BORDER = 20  # static black border with a bright "UI" strip, which the crop removes
SPECKLE_LOOKS = 8.0
TISSUE_ECHO, LESION_ECHO = 110.0, 20.0  # mean grey levels
LESION_RADII = (35, 22)  # ellipse half-axes in pixels (x, y)
SEED = 0
BARE = f"bare model forward (batch {DEFAULT_BATCH_SIZE})"
DEMO = "demo end-to-end (app.run_analysis)"
DEMO_LESION = "demo end-to-end with the lesion model"
DEMO_TWO_VIEWS = "demo end-to-end with the lesion and lesion-crop models (two views: what `python app.py` runs)"
BARE_UNFOLDED = "bare model forward, BatchNorms not folded (before)"
DEMO_TWO_VIEWS_UNFOLDED = "demo end-to-end with two views, BatchNorms not folded (before)"
BARE_DYNAMIC = "bare model forward, padding not static (before)"
DEMO_TWO_VIEWS_DYNAMIC = "demo end-to-end with two views, padding not static (before)"
REWRITES = {  # label: (loader keyword that turns it off, bare forward before, two-view demo before)
    "BatchNorm folding (`usvcl_hf.runtime.batchnorm_folding`)":
        ("fold_batchnorm", BARE_UNFOLDED, DEMO_TWO_VIEWS_UNFOLDED),
    "static padding (`usvcl_hf.runtime.static_padding`)": ("static_padding", BARE_DYNAMIC, DEMO_TWO_VIEWS_DYNAMIC),
}
TARGET_DEMO_S = 1.0  # issue #15: a 10 s clip end to end, with what `python app.py` runs


def synthetic_sweep(path: Path, seconds: float, fps: int) -> Path:
    """Write a grey H.264 clip: a dark elliptic lesion moving through speckled tissue, inside a static frame with a
    text-like strip. The bundled lesion model finds the lesion in every frame, so every part of the demo runs (the
    lesion crops, Grad-CAM, the outline): the worst case for time."""
    import av

    rng = np.random.default_rng(SEED)
    frame_count = round(seconds * fps)
    rows, columns = np.mgrid[0:CLIP_HEIGHT, 0:CLIP_WIDTH]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options={"crf": "23"})
        stream.width, stream.height, stream.pix_fmt = CLIP_WIDTH, CLIP_HEIGHT, "yuv420p"
        for index in range(frame_count):
            centre = CLIP_WIDTH / 2 + 60 * np.sin(2 * np.pi * index / frame_count)
            lesion = ((columns - centre) / LESION_RADII[0]) ** 2 + ((rows - CLIP_HEIGHT / 2) / LESION_RADII[1]) ** 2 < 1
            echo = np.where(lesion, LESION_ECHO, TISSUE_ECHO)  # (H, W): a dark (hypoechoic) lesion in brighter tissue
            tissue = echo * rng.gamma(SPECKLE_LOOKS, 1 / SPECKLE_LOOKS, (CLIP_HEIGHT, CLIP_WIDTH))
            frame = np.zeros((CLIP_HEIGHT, CLIP_WIDTH), np.float64)
            frame[BORDER:-BORDER, BORDER:-BORDER] = tissue[BORDER:-BORDER, BORDER:-BORDER]
            frame[: BORDER // 2, BORDER : CLIP_WIDTH // 2] = 200  # static overlay
            video_frame = av.VideoFrame.from_ndarray(np.clip(frame, 0, 255).astype(np.uint8), format="gray")
            for packet in stream.encode(video_frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def bare_forward(model, pixel_values: torch.Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
    """Forward passes only, on preprocessed frames, as the demo batches them."""
    with torch.inference_mode():
        for start in range(0, len(pixel_values), batch_size):
            model(pixel_values=pixel_values[start : start + batch_size])


def location(name: str) -> Path | str:
    """A model folder of this repository (e.g. models/...) as a path, anything else (a Hub id) as given."""
    return ROOT / name if (ROOT / name).is_dir() else name


def get_model(args: argparse.Namespace) -> tuple[object, object, str, Path | str | None]:
    """(model, processor, description, location or None) from --model, the default demo model, or a random
    --backbone."""
    default = app.DEFAULT_MODEL if (ROOT / app.DEFAULT_MODEL).is_dir() and not args.random_model else None
    name = args.model or default
    if name is not None:
        model, processor = load_model(location(name))
        return model, processor, f"{name} ({model.config.backbone}, {model.config.image_size} px)", location(name)
    torch.manual_seed(SEED)
    config = UsvclConfig(backbone=args.backbone, image_size=args.image_size)
    model = UsvclForImageClassification(config).eval()
    processor = UsvclImageProcessor(image_size=args.image_size)
    return model, processor, f"random {args.backbone} at {args.image_size} px (no trained model yet)", None


def two_views_without(two_views: app.LesionModel, switch: str) -> app.LesionModel:
    """The same lesion and crop models loaded with the loader keyword `switch` False (a side-by-side "before")."""
    return dataclasses.replace(
        two_views, model=load_lesion_model(location(two_views.name), **{switch: False})[0],
        crop_model=load_model(location(two_views.crop_name), **{switch: False})[0])


def git_commit() -> str:
    """Short commit of the repository (or 'unknown')."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or Hub id (default: the demo's default model if present)")
    parser.add_argument("--random-model", action="store_true", help="a random --backbone classifier, not the default")
    parser.add_argument("--backbone", default="resnet18", help="random classifier's timm backbone without a model")
    parser.add_argument("--image-size", type=int, default=224, help="random classifier's input size")
    parser.add_argument("--clip", type=Path, help="a real clip to time instead of the synthetic sweep")
    parser.add_argument("--seconds", type=float, default=10.0, help="synthetic clip length")
    parser.add_argument("--fps", type=int, default=25, help="synthetic clip frame rate")
    parser.add_argument("--stride", type=int, default=app.DEFAULT_FRAME_STRIDE, help="frame stride (app default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds")
    parser.add_argument("--lesion-model", default=app.DEFAULT_LESION_MODEL,
                        help="also time the demo with this lesion segmenter (default: the demo's, when present; "
                             "'none' to skip)")
    parser.add_argument("--crop-model", default=app.DEFAULT_CROP_MODEL,
                        help="also time the demo with the lesion model and this lesion-crop classifier (two views; "
                             "default: the demo's, when present; 'none' to skip)")
    return parser.parse_args()


def main() -> None:
    """Run the benchmark and print the Markdown report."""
    args = parse_args()
    run_started = time.perf_counter()
    model, processor, description, model_location = get_model(args)
    aggregation = model.config.clip_aggregation
    with tempfile.TemporaryDirectory() as folder:
        clip = args.clip or synthetic_sweep(Path(folder) / "sweep.mp4", args.seconds, args.fps)
        decoded = read_source(clip, frame_stride=args.stride, crop=True, max_frames=app.MAX_FRAMES)
        pixel_values = processor(decoded.frames, return_tensors="pt")["pixel_values"]

        def demo() -> None:
            app.run_analysis(model, processor, "benchmark", [str(clip)], args.stride, aggregation, True)

        def decode() -> None:
            read_source(clip, frame_stride=args.stride, crop=True, max_frames=app.MAX_FRAMES)

        def predict() -> None:
            predict_clip(model, processor, clip, frame_stride=args.stride, max_frames=app.MAX_FRAMES)

        def preprocess() -> None:
            processor(decoded.frames, return_tensors="pt")

        def gradcam() -> None:
            gradcam_heatmap(model, processor, decoded.frames[0], app.SALIENCY_CLASS)

        befores = {} if model_location is None else {  # loader keyword -> the model loaded with it False
            switch: load_model(model_location, **{switch: False})[0] for switch, _, _ in REWRITES.values()}
        measurements = {
            BARE: lambda: bare_forward(model, pixel_values),
            **{bare_name: functools.partial(bare_forward, befores[switch], pixel_values)
               for switch, bare_name, _ in REWRITES.values() if switch in befores},
            DEMO: demo,
            "decode + crop": decode,
            "preprocess": preprocess,
            "predict_clip": predict,
            "Grad-CAM (1 frame)": gradcam,
        }
        lesion = app.load_demo_lesion_model(args.lesion_model)
        if lesion is not None:  # the demo with the bundled lesion model
            measurements[DEMO_LESION] = lambda: app.run_analysis(model, processor, "benchmark", [str(clip)],
                                                                 args.stride, aggregation, True, lesion)
            two_views = dataclasses.replace(lesion, **dict(zip(("crop_model", "crop_processor", "crop_name"),
                                                               app.load_demo_crop_model(args.crop_model))))
            if two_views.crop_model is not None:  # the demo as `python app.py` runs it with every bundled model
                measurements[DEMO_TWO_VIEWS] = lambda: app.run_analysis(model, processor, "benchmark", [str(clip)],
                                                                        args.stride, aggregation, True, two_views)
                measurements.update(two_view_parts(two_views, decoded.frames))
                for switch, _, demo_name in REWRITES.values():
                    if switch in befores:
                        measurements[demo_name] = functools.partial(
                            app.run_analysis, befores[switch], processor, "benchmark", [str(clip)], args.stride,
                            aggregation, True, two_views_without(two_views, switch))
        times = timed_rounds(measurements, args.repeats)
    report(args, description, aggregation, len(decoded.frames), times, time.perf_counter() - run_started)


def two_view_parts(two_views: app.LesionModel, frames: list[np.ndarray]) -> dict[str, Callable[[], object]]:
    """What the two views add, on the kept frames: the lesion model with masks, and the crop classifier."""
    _, masks = frame_lesions(two_views.model, two_views.processor, frames, DEFAULT_BATCH_SIZE)
    crops, _ = lesion_crops(masks, frames, two_views.crop_model.config.lesion_crop_margin)
    return {
        "lesion model, presence and masks": lambda: frame_lesions(two_views.model, two_views.processor, frames,
                                                                  DEFAULT_BATCH_SIZE),
        "lesion-crop classifier": lambda: frame_scores(two_views.crop_model, two_views.crop_processor, crops,
                                                       DEFAULT_BATCH_SIZE),
    }


def describe_clip(args: argparse.Namespace) -> str:
    """What the timed clip was: the --clip file (codec, size, frames) or the synthetic sweep."""
    if args.clip is None:
        return f"synthetic {args.seconds:g} s at {args.fps} fps, {CLIP_WIDTH}x{CLIP_HEIGHT} H.264"
    import av

    with av.open(str(args.clip)) as container:
        stream = container.streams.video[0]
        width, height, codec = stream.codec_context.width, stream.codec_context.height, stream.codec_context.name
        frames = stream.frames or sum(1 for _ in container.decode(stream))  # the header's count when it has one
        fps = float(stream.average_rate or 0)
    return f"{args.clip.name}, {frames} frames at {fps:.0f} fps ({frames / fps:.1f} s), {width}x{height} {codec}"


def load_average() -> str:
    """The 1-minute load average (other processes on the machine), or '?'."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def report(args: argparse.Namespace, description: str, aggregation: str, frames: int,
           times: dict[str, list[float]], wall_s: float) -> None:
    """Print the Markdown report."""
    bare_min, demo_min = min(times[BARE]), min(times[DEMO])
    ratio = demo_min / bare_min
    paired = statistics.median(demo / bare for demo, bare in zip(times[DEMO], times[BARE]))
    command = ("python -m benchmarks.demo_latency " + " ".join(sys.argv[1:])).strip()
    print(f"Command: `{command}`; commit {git_commit()}; machine: 2-core CPU, no GPU (torch threads "
          f"{torch.get_num_threads()}, load average {load_average()} at the end); model: {description}.")
    print(f"Clip: {describe_clip(args)}; stride "
          f"{args.stride} -> {frames} frames; aggregation {aggregation}; {args.repeats} interleaved rounds after a "
          "warm-up.\n")
    print("| measurement | min (s) | median (s) | min per kept frame (ms) | min vs bare forward |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        low, middle = min(values), statistics.median(values)
        versus = f"**{low / bare_min:.2f}x** (target <= {TARGET_RATIO})" if name == DEMO else f"{low / bare_min:.2f}x"
        headline = name in (DEMO, DEMO_LESION, DEMO_TWO_VIEWS)
        standalone = name == BARE or any(name in rows for _, *rows in REWRITES.values())
        label = f"**{name}**" if headline else (name if standalone else f"of which: {name}")
        print(f"| {label} | {low:.3f} | {middle:.3f} | {1000 * low / frames:.1f} | {versus} |")
    print(f"\nRatio demo / bare forward: {ratio:.2f} (minima), {paired:.2f} (median of per-round ratios); "
          f"{'meets' if ratio <= TARGET_RATIO else 'MISSES'} the target {TARGET_RATIO}. "
          f"Wall time of the whole benchmark: {wall_s:.0f} s.")
    for line in [*(rewrite_line(rewrite, times) for rewrite in REWRITES), target_line(times)]:
        if line:
            print(line)


def rewrite_line(rewrite: str, times: dict[str, list[float]]) -> str | None:
    """How much faster one of REWRITES made the bare forward and the two-view demo (minima, this run)."""
    _, bare_before, demo_before = REWRITES[rewrite]
    pairs = [(label, times[before], times[after]) for label, before, after in (
        ("bare forward", bare_before, BARE), ("two-view demo", demo_before, DEMO_TWO_VIEWS))
        if before in times and after in times]
    if not pairs:
        return None
    gains = "; ".join(f"{label} {min(before) / min(after):.2f}x faster ({min(before):.3f} -> {min(after):.3f} s)"
                      for label, before, after in pairs)
    return f"{rewrite[0].upper()}{rewrite[1:]}, side by side in this run (minima): {gains}."


def target_line(times: dict[str, list[float]]) -> str:
    """Issue #15's target: the clip end to end with what `python app.py` runs, within TARGET_DEMO_S."""
    name = next(name for name in (DEMO_TWO_VIEWS, DEMO_LESION, DEMO) if name in times)
    low, middle = min(times[name]), statistics.median(times[name])
    verdict = {(True, True): "met by the minimum and the median", (True, False): "met by the minimum only, "
               "MISSED by the median"}.get((low <= TARGET_DEMO_S, middle <= TARGET_DEMO_S), "MISSED")
    views = {DEMO_TWO_VIEWS: "two views", DEMO_LESION: "the lesion gate", DEMO: "one view"}[name]
    return (f"What `python app.py` runs with the bundled models ({views}): {low:.3f} s minimum, "
            f"{middle:.3f} s median; target <= {TARGET_DEMO_S:.1f} s: {verdict}.")


if __name__ == "__main__":
    main()
