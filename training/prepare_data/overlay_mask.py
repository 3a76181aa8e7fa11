"""Mask burnt-in overlays (annotation text, caliper marks, scale digits) in greyscale ultrasound images.

The cheapest fix issue #9 asks for after the saliency study found weight on burnt-in text and calipers: such marks
are thin strokes far brighter than the tissue around them, while bright tissue is bright over an area. A pixel is an
overlay stroke when it is at least `STROKE_MIN_LEVEL` and exceeds the median of its `BACKGROUND_WINDOW` square by at
least `STROKE_MIN_CONTRAST`; strokes are grown by two pixels and replaced by that local median. Only PIL and numpy.
It catches most text on dark or mid-grey tissue, misses some on bright tissue, and also takes the brightest speckle
and the corners of sharply bounded bright regions (docs/figures/overlay_mask_examples.png shows the worst cases).

    python -m training.prepare_data.overlay_mask --store stores/bus_bra --output stores/bus_bra_masked \
        --examples docs/figures/overlay_mask_examples.png
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from training.cli_inputs import require_inputs
from training.logs import setup_logging
from training.prepare_data.store_rewrite import rewrite_store_images
from usvcl_hf.image_processing_usvcl import to_grey_uint8

STROKE_MIN_LEVEL = 170
STROKE_MIN_CONTRAST = 100
BACKGROUND_WINDOW = 15
GROW_WINDOW = 5
EXAMPLE_COUNT = 4
EXAMPLE_HEIGHT = 300
LOGGER = logging.getLogger(__name__)


def mask_overlays(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(H, W)` uint8 -> (the image with overlay strokes replaced by the local median, the `(H, W)` bool mask)."""
    background = np.asarray(Image.fromarray(grey).filter(ImageFilter.MedianFilter(BACKGROUND_WINDOW)))
    strokes = (grey >= STROKE_MIN_LEVEL) & (grey.astype(np.int16) - background >= STROKE_MIN_CONTRAST)
    grown = Image.fromarray(strokes.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(GROW_WINDOW))
    mask = np.asarray(grown) > 0
    return np.where(mask, background, grey), mask


def masked_png(image: Image.Image, coverage: list[float]) -> bytes:
    """PNG bytes of `image` with its overlays masked; appends the masked share of pixels to `coverage`."""
    cleaned, mask = mask_overlays(to_grey_uint8(image))
    coverage.append(float(mask.mean()))
    buffer = io.BytesIO()
    Image.fromarray(cleaned).save(buffer, format="PNG")
    return buffer.getvalue()


def save_examples(store_path: Path, output: Path, coverage: list[float]) -> None:
    """Before / after / mask for the `EXAMPLE_COUNT` images with the most masked pixels, side by side."""
    store = datasets.load_from_disk(str(store_path))
    rows = []
    for index in np.argsort(coverage)[::-1][:EXAMPLE_COUNT]:
        grey = to_grey_uint8(store[int(index)]["image"])
        width = round(grey.shape[1] * EXAMPLE_HEIGHT / grey.shape[0])
        grey = np.asarray(Image.fromarray(grey).resize((width, EXAMPLE_HEIGHT)))
        cleaned, mask = mask_overlays(grey)
        rows.append(np.concatenate([grey, cleaned, mask.astype(np.uint8) * 255], axis=1))
    widest = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, 0), (0, widest - row.shape[1]))) for row in rows]
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(padded, axis=0)).save(output)


def main(argv: list[str] | None = None) -> None:
    """CLI: write a copy of an image store with its overlays masked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="image store (training.prepare_data output)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the masked store")
    parser.add_argument("--examples", type=Path, default=None, help="PNG of before / after / mask examples")
    args = parser.parse_args(argv)
    require_inputs("python -m training.prepare_data.overlay_mask", {"--store": args.store})
    setup_logging()
    coverage: list[float] = []
    rewrite_store_images(args.store, args.output, lambda image: masked_png(image, coverage),
                         progress=lambda images: tqdm(images, desc="masking overlays", unit="image"))
    summary = {"images": len(coverage), "mean_masked_share": float(np.mean(coverage)),
               "images_with_any_mask": int(np.count_nonzero(coverage)), "max_masked_share": float(np.max(coverage))}
    (args.output / "overlay_mask.json").write_text(json.dumps(summary, indent=2))
    if args.examples is not None:
        save_examples(args.store, args.examples, coverage)
    LOGGER.info("Masked store written to %s (%s); examples: %s.", args.output, summary, args.examples or "not written")


if __name__ == "__main__":
    main()
